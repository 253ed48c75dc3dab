//! Who may put files on a device (PROTOCOL.md §11.5): the link decides, never the envelope.
//! A hostile peer on a real WebRTC link offers a pack to a master claiming the master's own
//! device id; a stock follower process publishes a pack to the master it joined. Neither may
//! leave a byte on the master's disk, and each is told `forbidden-not-host`.
//!
//! Every wait is for an event, with a generous deadline; nothing sleeps to synchronise.
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::Proc;
use lansync::node::{Files, FilesOptions, Node, NodeOptions};
use lansync::protocol::{Envelope, Message, TransferOffer};
use lansync::session::{Master, MasterConfig, Solo, SoloConfig, Time};
use lansync::transfer::{
    encode_chunk, sha256_hex, FileEntry, Manifest, ManifestKind, MANIFEST_SCHEMA_VERSION,
    MAX_CHUNK_PAYLOAD,
};
use lansync::transport::{accept_offer, create_offer, Link, LinkEvent, TransportConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-ident-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PDF whose bytes no other test writes.
fn unique_pdf(tag: &str, len: usize) -> Vec<u8> {
    let mut bytes = format!("%PDF-1.7\n{tag}-{}\n", std::process::id()).into_bytes();
    bytes.extend((0..len).map(|i| (i * 31 % 251) as u8));
    bytes
}

/// Every regular file under `dir`, recursively (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&e.path())),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
    out
}

/// A `lansync` process whose JSON lines are read, errors included (a stock follower that is
/// told it may not publish still runs).
struct Lines {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Lines {
    fn spawn(args: &[&str]) -> Lines {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_lansync"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lansync");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Lines {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, v: &serde_json::Value) {
        use std::io::Write;
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let end = std::time::Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("follower: no {what} within {DEADLINE:?}"),
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cfg() -> TransportConfig {
    TransportConfig {
        loopback_only: true,
        ..Default::default()
    }
}

/// A link to `node` that no session admitted: (our end, opened).
async fn raw_link_to(node: &Node) -> Link {
    let offer = create_offer(&cfg()).await.expect("offer");
    let (answer, mut theirs) = accept_offer(&cfg(), offer.sdp()).await.expect("answer");
    let mut ours = offer.accept_answer(&answer).await.expect("accept answer");
    let (a, b) = tokio::join!(ours.wait_open(DEADLINE), theirs.wait_open(DEADLINE));
    a.expect("our end open");
    b.expect("their end open");
    node.add_link(theirs);
    ours
}

/// The next reply to our round `transfer` on `link` (REQUEST, DONE or ABORT), if one comes
/// before the deadline. Offers the node makes of its own sets are skipped.
async fn reply_to(link: &mut Link, transfer: u32) -> Option<Message> {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ev = tokio::time::timeout_at(end, link.recv()).await.ok()??;
        let LinkEvent::Control(text) = ev else {
            continue;
        };
        let Ok(env) = Envelope::decode(text.as_bytes()) else {
            continue;
        };
        let ours = match &env.msg {
            Message::TransferRequest(r) => r.transfer == transfer,
            Message::TransferDone(d) => d.transfer == transfer,
            Message::TransferAbort(a) => a.transfer == transfer,
            _ => false,
        };
        if ours {
            return Some(env.msg);
        }
    }
}

/// An envelope claiming to come from `claimed` (the node's own id: a lie).
fn envelope(claimed: &str, seq: u64, msg: Message) -> String {
    Envelope {
        session_id: String::new(),
        sender_id: claimed.into(),
        ts: Time::from_millis(1_735_689_600_000).as_millis(),
        seq,
        msg,
    }
    .encode()
    .unwrap()
}

/// Files with the options every node here uses: downloads into `downloads`.
fn files_into(device: &str, downloads: &Path) -> Files {
    let mut opts = FilesOptions::new(device);
    opts.download_dir = Some(downloads.to_path_buf());
    Files::spawn(opts).0
}

/// A pack of one score to publish, under `name`.
fn a_pack(name: &str) -> PathBuf {
    let pack = temp_dir(&format!("{name}-pack"));
    std::fs::write(pack.join("hymn.pdf"), unique_pdf("hymn", 1000)).unwrap();
    pack
}

/// A peer on a link to `node` offers a pack claiming to be `claimed` (the node's own device
/// id) and sends every chunk; the node's download directory must stay empty and the peer be
/// told `forbidden-not-host`.
async fn spoofed_offer(node: &Node, downloads: &Path, claimed: &str, name: &str) {
    let mut link = raw_link_to(node).await;
    let payload = unique_pdf(name, 3 * MAX_CHUNK_PAYLOAD);
    let manifest = Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        kind: ManifestKind::Pack,
        files: vec![FileEntry {
            id: "f1".into(),
            name: "planted.pdf".into(),
            size: payload.len() as u64,
            mime: "application/pdf".into(),
            sha256: sha256_hex(&payload),
            media_refs: Vec::new(),
        }],
        updated_at: 1,
        uploaded_by: claimed.into(),
    };
    let transfer = 700;
    let offer = Message::TransferOffer(TransferOffer { transfer, manifest });
    let sender = link.sender();
    sender
        .send_control(&envelope(claimed, 1, offer))
        .await
        .unwrap();
    // The chunks go whatever the answer: a host must drop them too.
    let reply = reply_to(&mut link, transfer).await;
    for (i, c) in payload.chunks(MAX_CHUNK_PAYLOAD).enumerate() {
        sender
            .send_binary(&encode_chunk(transfer, i as u32, c).unwrap())
            .await
            .unwrap();
    }
    if matches!(reply, Some(Message::TransferRequest(_))) {
        // Accepted (the bug): wait for the confirmation, so the disk check below sees it.
        let _ = reply_to(&mut link, transfer).await;
    }
    let landed = files_under(downloads);
    assert!(
        landed.is_empty(),
        "{name}: a peer's files landed on the host: {landed:?}"
    );
    match reply {
        Some(Message::TransferAbort(a)) => assert_eq!(a.code, "forbidden-not-host", "{name}"),
        other => panic!("{name}: expected TRANSFER_ABORT forbidden-not-host, got {other:?}"),
    }
    // Chunks were dropped, not kept for later: one more round trip, and look again.
    let again = Message::TransferOffer(TransferOffer {
        transfer: transfer + 1,
        manifest: Manifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            kind: ManifestKind::Media,
            files: Vec::new(),
            updated_at: 2,
            uploaded_by: claimed.into(),
        },
    });
    sender
        .send_control(&envelope(claimed, 2, again))
        .await
        .unwrap();
    assert!(matches!(
        reply_to(&mut link, transfer + 1).await,
        Some(Message::TransferAbort(_))
    ));
    assert!(files_under(downloads).is_empty(), "{name}");
}

/// A master with a pack published, and one with nothing published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_claiming_the_masters_id_cannot_put_files_on_a_master() {
    for published in [true, false] {
        let name = if published { "published" } else { "bare" };
        let downloads = temp_dir(&format!("{name}-dl"));
        let master = Master::new(
            MasterConfig::new("master"),
            Time::from_millis(1_735_689_600_000),
            [9; 32],
        );
        let (node, _events) = Node::spawn(
            master,
            NodeOptions {
                files: Some(files_into("master", &downloads)),
                ..Default::default()
            },
        );
        if published {
            node.publish_pack(a_pack(name)).await.expect("publish");
        }
        spoofed_offer(&node, &downloads, "master", name).await;
    }
}

/// The sending side of a solo pair, paired on the link, with the partner claiming its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_partner_cannot_put_files_on_the_sending_side() {
    let downloads = temp_dir("solo-dl");
    let (node, _events) = Node::spawn(
        Solo::new(SoloConfig::new("tablet-a"), 5),
        NodeOptions {
            files: Some(files_into("tablet-a", &downloads)),
            ..Default::default()
        },
    );
    node.publish_pack(a_pack("solo")).await.expect("publish");
    spoofed_offer(&node, &downloads, "tablet-a", "solo").await;
}

/// Files under the system's temporary directory (a few levels deep) with exactly these bytes,
/// outside `skip`.
fn copies_in_temp(wanted: &[Vec<u8>], skip: &[&Path]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, wanted: &[Vec<u8>], skip: &[&Path], out: &mut Vec<PathBuf>) {
        if depth == 0 || skip.iter().any(|s| dir.starts_with(s)) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&path, depth - 1, wanted, skip, out),
                Ok(t) if t.is_file() => {
                    let len = e.metadata().map_or(0, |m| m.len());
                    if wanted.iter().any(|w| w.len() as u64 == len)
                        && std::fs::read(&path).is_ok_and(|b| wanted.contains(&b))
                    {
                        out.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&std::env::temp_dir(), 4, wanted, skip, &mut out);
    out
}

#[test]
fn a_stock_follower_publishing_a_pack_leaves_the_masters_disk_untouched() {
    let (hd, fd, pack) = (temp_dir("host"), temp_dir("follower"), temp_dir("f-pack"));
    let contents: Vec<Vec<u8>> = (0..3)
        .map(|i| unique_pdf(&format!("follower-{i}"), 20_000 + i * 7))
        .collect();
    for (i, c) in contents.iter().enumerate() {
        std::fs::write(pack.join(format!("part{i}.pdf")), c).unwrap();
    }
    let (hd_s, fd_s, pack_s) = (
        hd.display().to_string(),
        fd.display().to_string(),
        pack.display().to_string(),
    );
    let host = Proc::spawn(
        "host",
        &["host", "--json", "--loopback", "--state-dir", &hd_s],
    );
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let link = hosting["link"].as_str().unwrap().to_string();
    let mut follower = Lines::spawn(&["join", &link, "--json", "--loopback", "--state-dir", &fd_s]);
    follower.wait_for("joined", |v| v["event"] == "joined");
    // The follower's session refuses to announce it (`command-not-allowed`), but its file
    // service offers the pack on its link all the same: the master must refuse it.
    follower.send(&serde_json::json!({"cmd":"publish_pack","dir":pack_s}));
    let failed = follower.wait_for("the master's refusal", |v| {
        v["event"] == "files_failed" || v["event"] == "files_done"
    });
    assert_eq!(failed["event"], "files_failed", "{failed}");
    assert_eq!(failed["code"], "forbidden-not-host", "{failed}");
    let copies = copies_in_temp(&contents, &[&pack, &fd]);
    assert!(copies.is_empty(), "the follower's files landed: {copies:?}");
}
