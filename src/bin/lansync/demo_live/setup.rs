//! The rehearsal's cast: the session pack on disk, the master on loopback, each follower's
//! dialer (noting its link, so the script can cut it), and how the script gives a node a command.

use super::log::{Log, Who};
use lansync::node::{
    follower_dialer, DialFuture, Dialer, Files, FilesOptions, Host, HostOptions, JoinTarget, Node,
};
use lansync::session::{Command, JoinCredentials, MasterConfig};
use lansync::signaling::RateLimit;
use lansync::transport::{Identity, LinkSender, TransportConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A small session pack: a score, an audio track and a video, with their real magic bytes.
pub(super) fn make_pack(dir: &Path) -> Vec<PathBuf> {
    let _ = std::fs::create_dir_all(dir);
    let files: [(&str, &[u8], usize); 3] = [
        ("locus-iste.pdf", b"%PDF-1.7\n", 300_000),
        ("locus-iste-tutti.ogg", b"OggS", 200_000),
        ("warm-up.mp4", b"\0\0\0\x20ftypisom", 500_000),
    ];
    let mut x = 0x9e37_79b9u32;
    files
        .iter()
        .map(|(name, head, len)| {
            let mut bytes = head.to_vec();
            bytes.extend((0..*len).map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }));
            let path = dir.join(name);
            let _ = std::fs::write(&path, bytes);
            path
        })
        .collect()
}

/// Each follower's end of its current link, so the demo can cut it.
pub(super) type Cuts = Arc<Mutex<HashMap<usize, LinkSender>>>;

/// The library's follower dialer, noting each new link (to cut it later) and its setup time.
pub(super) fn dialer(
    i: usize,
    target: JoinTarget,
    cuts: Cuts,
    setups: Arc<Mutex<Vec<f64>>>,
) -> Dialer {
    let cfg = TransportConfig {
        loopback_only: true,
        ..TransportConfig::default()
    };
    let id = format!("singer-{i}");
    let mut inner = follower_dialer(target, cfg, id.clone(), id);
    Box::new(move |creds: JoinCredentials| {
        let (dial, cuts, setups) = (inner(creds), cuts.clone(), setups.clone());
        let fut: DialFuture = Box::pin(async move {
            let start = Instant::now();
            let link = dial.await?;
            setups
                .lock()
                .unwrap()
                .push(start.elapsed().as_secs_f64() * 1000.0);
            cuts.lock().unwrap().insert(i, link.sender());
            Ok(link)
        });
        fut
    })
}

/// Starts the master on `bind` with the demo pack published, its events into `log`.
pub(super) async fn start_master(
    record_path: &Path,
    bind: SocketAddr,
    identity: &Identity,
    log: &Arc<Log>,
    pack: &Path,
) -> Host {
    let (files, _master_files) = Files::spawn(FilesOptions::new("master"));
    let mut master = MasterConfig::new("master");
    master.device_name = "Choir master".into();
    master.session_name = "Thursday rehearsal".into();
    let mut host = Host::start(HostOptions {
        master,
        record_path: Some(record_path.to_path_buf()),
        identity: Some(identity.clone()),
        state_dir: None,
        advertise: false,
        bind,
        transport: TransportConfig {
            loopback_only: true,
            ..TransportConfig::default()
        },
        // Everyone joins from 127.0.0.1 here, so the per-address rate limit is opened wide.
        rate: RateLimit {
            per_sec: 10_000.0,
            burst: 10_000.0,
        },
        files: Some(files),
    })
    .await
    .expect("cannot start the master on loopback");
    log.collect_app(Who::Master, host.events());
    // Published before anyone joins (as `lansync host --pack`): a newcomer gets it unasked.
    if let Err(e) = host.node.publish_pack(pack.to_path_buf()).await {
        eprintln!("cannot publish the demo pack: {e}");
    }
    host
}

/// Gives a node of the demo a command; a stopped node shows up in the checks that follow.
pub(super) fn tell(node: &Node, cmd: Command) {
    if let Err(e) = node.command(cmd) {
        tracing::warn!(%e, "a demo node has stopped");
    }
}
