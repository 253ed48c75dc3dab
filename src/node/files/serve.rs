//! The host side, one task per admitted peer: offers each published set in turn and streams the
//! requested ranges from disk with the pure [`Sender`]. `send_binary` waits while the link's
//! send buffer is full, so memory stays bounded by the sender's in-flight budget plus that
//! buffer, whatever the peer's speed; one slow peer never holds up another.

use super::events::{FilesEvent, ProgressThrottle};
use super::link_out::LinkOut;
use super::publish::Published;
use crate::protocol::Message;
use crate::session::PeerId;
use crate::transfer::{Sender, SenderConfig, SenderOutput, TransferEvent};
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What every peer task shares.
pub(crate) struct ServeCtx {
    pub peer: PeerId,
    pub link: LinkOut,
    pub config: SenderConfig,
    pub events: mpsc::UnboundedSender<FilesEvent>,
}

/// Serves `sets` to one peer until the link is gone (its control sender is dropped).
pub(crate) async fn serve(
    ctx: ServeCtx,
    mut sets: watch::Receiver<Vec<Arc<Published>>>,
    mut control: mpsc::UnboundedReceiver<Message>,
) {
    // Sets this link has finished (confirmed or refused): not offered again on it.
    let mut finished: HashSet<String> = HashSet::new();
    let mut next_transfer = 1u32;
    loop {
        let current = sets.borrow_and_update().clone();
        let Some(set) = current
            .iter()
            .find(|s| !finished.contains(&s.hash))
            .cloned()
        else {
            tokio::select! {
                changed = sets.changed() => if changed.is_err() { return },
                msg = control.recv() => match msg {
                    Some(m) => tracing::debug!(peer = ctx.peer, ty = m.type_name(), "no round for it"),
                    None => return,
                },
            }
            continue;
        };
        let config = SenderConfig {
            first_transfer: next_transfer,
            ..ctx.config
        };
        next_transfer = next_transfer.wrapping_add(1);
        match send_set(&ctx, &set, config, &mut sets, &mut control).await {
            Round::Finished => {
                finished.insert(set.hash.clone());
            }
            Round::Superseded => {}
            Round::LinkGone => return,
        }
    }
}

enum Round {
    Finished,
    Superseded,
    LinkGone,
}

async fn send_set(
    ctx: &ServeCtx,
    set: &Published,
    config: SenderConfig,
    sets: &mut watch::Receiver<Vec<Arc<Published>>>,
    control: &mut mpsc::UnboundedReceiver<Message>,
) -> Round {
    let kind = set.manifest.kind;
    let mut sender = match Sender::new(config, set.manifest.clone()) {
        Ok(s) => s,
        Err(e) => {
            let _ = ctx
                .events
                .send(FilesEvent::failed(kind, Some(ctx.peer), &e));
            return Round::Finished;
        }
    };
    let mut open: Vec<Option<File>> = (0..set.paths.len()).map(|_| None).collect();
    let mut throttle = ProgressThrottle::default();
    sender.offer(ctx.link.now());
    let mut buf = Vec::new();
    loop {
        while let Some(out) = sender.poll_output() {
            match out {
                SenderOutput::Control(m) => {
                    if ctx.link.send(m).await.is_err() {
                        return Round::LinkGone;
                    }
                }
                SenderOutput::Read { file, offset, len } => {
                    buf.resize(len, 0);
                    let read = read_at(&mut open, &set.paths, file, offset, &mut buf);
                    let bytes = if read.is_ok() { &buf[..] } else { &[][..] };
                    // A failed read hands over no bytes: the sender aborts the round.
                    let _ = sender.handle_data(ctx.link.now(), file, offset, bytes);
                }
                SenderOutput::Chunk(bytes) => {
                    if ctx.link.sender.send_binary(&bytes).await.is_err() {
                        return Round::LinkGone;
                    }
                    sender.handle_drained(bytes.len() as u64);
                    if throttle.due(ctx.link.now()) {
                        let p = sender.progress(ctx.link.now());
                        let _ = ctx
                            .events
                            .send(FilesEvent::progress(kind, Some(ctx.peer), &p));
                    }
                }
                SenderOutput::Event(TransferEvent::Done { hash, .. }) => {
                    let _ = ctx.events.send(FilesEvent::Done {
                        kind,
                        peer: Some(ctx.peer),
                        hash,
                    });
                    return Round::Finished;
                }
                SenderOutput::Event(TransferEvent::Failed { code, message, .. }) => {
                    let _ = ctx.events.send(FilesEvent::Failed {
                        kind,
                        peer: Some(ctx.peer),
                        code,
                        message,
                    });
                    return Round::Finished;
                }
                SenderOutput::Event(TransferEvent::FileDone { .. }) => {}
            }
            // Between chunks: an ABORT or a new publication must not wait for the whole file.
            match control.try_recv() {
                Ok(m) => {
                    let _ = sender.handle_control(ctx.link.now(), &m);
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return Round::LinkGone,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if superseded(sets, &set.hash) {
                return Round::Superseded;
            }
        }
        tokio::select! {
            msg = control.recv() => match msg {
                Some(m) => {
                    if let Err(e) = sender.handle_control(ctx.link.now(), &m) {
                        tracing::debug!(peer = ctx.peer, %e, "transfer message refused");
                    }
                }
                None => return Round::LinkGone,
            },
            changed = sets.changed() => {
                if changed.is_err() {
                    return Round::LinkGone;
                }
                if superseded(sets, &set.hash) {
                    return Round::Superseded;
                }
            }
        }
    }
}

/// Whether the set being sent was withdrawn or replaced.
fn superseded(sets: &mut watch::Receiver<Vec<Arc<Published>>>, hash: &str) -> bool {
    sets.has_changed().unwrap_or(true) && !sets.borrow().iter().any(|s| s.hash == hash)
}

fn read_at(
    open: &mut [Option<File>],
    paths: &[std::path::PathBuf],
    file: u32,
    offset: u64,
    buf: &mut [u8],
) -> std::io::Result<()> {
    let i = file as usize;
    let slot = open
        .get_mut(i)
        .ok_or_else(|| std::io::Error::other("no such file"))?;
    if slot.is_none() {
        *slot = Some(File::open(&paths[i])?);
    }
    match slot {
        Some(f) => f.read_exact_at(buf, offset),
        None => Err(std::io::Error::other("not open")),
    }
}
