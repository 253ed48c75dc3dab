//! Turning files on the host's disk into a manifest: list, type-check, hash.

use crate::transfer::{
    check_media, FileEntry, Limits, Manifest, ManifestKind, MediaType, TransferError,
    MANIFEST_SCHEMA_VERSION, MAX_CHUNK_PAYLOAD,
};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A published set: its manifest and where each file's bytes are read from.
#[derive(Debug)]
pub(crate) struct Published {
    pub manifest: Manifest,
    pub hash: String,
    pub paths: Vec<PathBuf>,
}

fn not_found(kind: ManifestKind) -> TransferError {
    match kind {
        ManifestKind::Pack => TransferError::SessionPackNotFound,
        _ => TransferError::SessionMediaNotFound,
    }
}

fn invalid(kind: ManifestKind, why: String) -> TransferError {
    match kind {
        ManifestKind::Pack => TransferError::InvalidSessionPack(why),
        _ => TransferError::InvalidSessionMedia(why),
    }
}

/// Every regular, visible file directly in `dir`, sorted by name (so the same directory always
/// gives the same manifest order).
pub(crate) fn list_dir(dir: &Path, kind: ManifestKind) -> Result<Vec<PathBuf>, TransferError> {
    let entries = std::fs::read_dir(dir).map_err(|_| not_found(kind))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// Builds and validates the manifest of `paths`: each file's type is checked by extension and
/// magic bytes and its SHA-256 computed by reading it once (blocking: run off the async loop).
pub(crate) fn build(
    kind: ManifestKind,
    paths: Vec<PathBuf>,
    uploaded_by: &str,
    updated_at: u64,
    limits: &Limits,
) -> Result<Arc<Published>, TransferError> {
    if paths.is_empty() {
        return Err(not_found(kind));
    }
    if paths.len() > limits.max_files {
        return Err(invalid(
            kind,
            format!("{} files, at most {}", paths.len(), limits.max_files),
        ));
    }
    let mut files = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        let mime = MediaType::from_extension(ext)
            .map(|t| t.mimes()[0])
            .unwrap_or("application/octet-stream");
        let (size, head, sha256) =
            hash_file(path).map_err(|e| invalid(kind, format!("cannot read {name}: {e}")))?;
        if size > limits.max_file_bytes {
            // Checked here too so a huge file is refused before it is hashed in full elsewhere.
            return Err(match kind {
                ManifestKind::Pack => TransferError::SessionPackTooLarge {
                    size,
                    limit: limits.max_file_bytes,
                },
                _ => TransferError::SessionMediaTooLarge {
                    size,
                    limit: limits.max_file_bytes,
                },
            });
        }
        check_media(&name, mime, &head)?;
        files.push(FileEntry {
            id: format!("f{}", i + 1),
            name,
            size,
            mime: mime.to_string(),
            sha256,
            media_refs: Vec::new(),
        });
    }
    let mut manifest = Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        kind,
        files,
        updated_at,
        uploaded_by: uploaded_by.to_string(),
    };
    manifest.validate(limits)?;
    Ok(Arc::new(Published {
        hash: manifest.hash(),
        manifest,
        paths,
    }))
}

/// Size, first bytes (for the magic check) and SHA-256 of a file, read once.
fn hash_file(path: &Path) -> std::io::Result<(u64, Vec<u8>, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut head) = (0u64, Vec::new());
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        // The receiver checks the magic bytes of the first chunk; check the same bytes here.
        if head.len() < MAX_CHUNK_PAYLOAD {
            let take = (MAX_CHUNK_PAYLOAD - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let sha = crate::auth::hex(&hasher.finalize());
    Ok((size, head, sha))
}
