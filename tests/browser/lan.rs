//! LANs of network namespaces for the browser tests, and runtimes inside them.

use std::fs::File;

// The LAN builder shared with the other tests that need one, and through it the namespace
// plumbing shared with the benchmarks and the stock-peer tests.
#[path = "../common/lan.rs"]
mod common_lan;
#[allow(unused_imports)] // used by stock_chromium, not by browser_followers
pub use common_lan::plumbing as netns;
pub use common_lan::Lan;

/// Runs `body` on a tokio runtime whose threads all live in namespace `ns` (threads inherit the
/// namespace of the thread that spawns them), so every socket lansync opens is there.
pub fn in_netns<F>(ns: &str, body: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    // `LANSYNC_LOG=rtc_sctp=trace` (say) shows what lansync's engine did, on stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("LANSYNC_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let path = format!("/var/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let file = File::open(&path).expect("open the namespace");
        // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}
