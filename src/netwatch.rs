//! Network change notifications: tells the app when an interface comes up or gains an address,
//! so a disconnected follower redials at once instead of waiting out its backoff.
//!
//! On Linux this listens to the kernel's routing netlink groups (link and address changes) on a
//! small thread of its own; elsewhere it does nothing (the backoff still brings links back).
//!
//! The socket and the walk over its messages are written by hand (three `unsafe` calls: socket,
//! bind, recv). `netlink-sys` + `netlink-packet-route` were tried in their place: the same two
//! syscalls at startup and the same blocking `recv` when idle (so no difference there), but
//! `netlink-packet-route` took 71 s of a release build on the project's 2-core machine (plus
//! 9 s for `zerocopy`), made the stripped `lansync` binary about 610 KB larger (14.72 →
//! 15.34 MB, of which 5 KB was another crate), and parses every attribute of every message to
//! answer the one question asked here: is it RTM_NEWADDR, or RTM_NEWLINK with IFF_UP and
//! IFF_RUNNING set.

/// Calls `changed` whenever an interface comes up (running) or an address is added, for as long
/// as it returns `true` (a subscriber whose node is gone returns `false` and is dropped at the
/// next change). Every subscriber shares one watcher thread and one netlink socket, started with
/// the first: an app that makes many nodes over its life does not gather threads. Returns an
/// error only when the notifications cannot be set up.
#[cfg(target_os = "linux")]
pub fn watch(changed: impl Fn() -> bool + Send + 'static) -> std::io::Result<()> {
    use std::sync::{Mutex, OnceLock};
    type Subscriber = Box<dyn Fn() -> bool + Send>;
    static SUBSCRIBERS: Mutex<Vec<Subscriber>> = Mutex::new(Vec::new());
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let fd = linux::open().map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("lansync-netwatch".into())
            .spawn(move || {
                linux::run(fd, || {
                    let mut subscribers = SUBSCRIBERS.lock().unwrap_or_else(|e| e.into_inner());
                    subscribers.retain(|changed| changed());
                })
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    if let Err(e) = started {
        return Err(std::io::Error::other(e.clone()));
    }
    SUBSCRIBERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(changed));
    Ok(())
}

/// Does nothing on this platform.
#[cfg(not(target_os = "linux"))]
pub fn watch(_changed: impl Fn() -> bool + Send + 'static) -> std::io::Result<()> {
    Ok(())
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// A netlink socket subscribed to link and address changes.
    pub fn open() -> io::Result<OwnedFd> {
        // SAFETY: plain socket creation; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value to fill in.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups =
            (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        // SAFETY: `addr` is a valid sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }

    /// Reads notifications until the socket fails; calls `changed` for interesting ones.
    pub fn run(fd: OwnedFd, changed: impl Fn()) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!(e = %io::Error::last_os_error(), "network watcher stopped");
                return;
            }
            if interesting(&buf[..n as usize]) {
                changed();
            }
        }
    }

    const HEADER: usize = 16; // nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32
    const IFF_UP_RUNNING: u32 = (libc::IFF_UP | libc::IFF_RUNNING) as u32;

    /// Whether a batch of netlink messages holds a link that is up and running, or a new address.
    pub fn interesting(mut bytes: &[u8]) -> bool {
        let mut any = false;
        while bytes.len() >= HEADER {
            let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
            if len < HEADER || len > bytes.len() {
                break;
            }
            let body = &bytes[HEADER..len];
            any |= match kind {
                libc::RTM_NEWADDR => true,
                // ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32
                libc::RTM_NEWLINK => body.get(8..12).is_some_and(|f| {
                    let flags = u32::from_ne_bytes([f[0], f[1], f[2], f[3]]);
                    flags & IFF_UP_RUNNING == IFF_UP_RUNNING
                }),
                _ => false,
            };
            // Messages are aligned to 4 bytes.
            let next = (len + 3) & !3;
            bytes = bytes.get(next..).unwrap_or(&[]);
        }
        any
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
            let len = (HEADER + body.len()) as u32;
            let mut m = len.to_ne_bytes().to_vec();
            m.extend(kind.to_ne_bytes());
            m.extend([0u8; 10]);
            m.extend(body);
            while m.len() % 4 != 0 {
                m.push(0);
            }
            m
        }

        fn link(flags: u32) -> Vec<u8> {
            let mut body = vec![0u8; 8];
            body.extend(flags.to_ne_bytes());
            body.extend([0u8; 4]);
            msg(libc::RTM_NEWLINK, &body)
        }

        #[test]
        fn a_running_link_or_a_new_address_is_a_change_a_down_link_is_not() {
            assert!(interesting(&link(IFF_UP_RUNNING)));
            assert!(!interesting(&link(libc::IFF_UP as u32)));
            assert!(interesting(&msg(libc::RTM_NEWADDR, &[0u8; 8])));
            assert!(!interesting(&msg(libc::RTM_DELADDR, &[0u8; 8])));
            let mut batch = link(0);
            batch.extend(msg(libc::RTM_NEWADDR, &[0u8; 8]));
            assert!(interesting(&batch));
        }

        #[test]
        fn many_subscribers_share_one_watcher_thread() {
            let threads = || {
                std::fs::read_dir("/proc/self/task")
                    .unwrap()
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| name.starts_with("lansync-netwat"))
                    .count()
            };
            for _ in 0..20 {
                if crate::netwatch::watch(|| false).is_err() {
                    return; // no netlink here (a sandbox): nothing to count
                }
            }
            // The thread names itself once it runs: wait for that, then count.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while threads() == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            assert_eq!(threads(), 1);
        }

        #[test]
        fn truncated_or_garbage_batches_are_ignored() {
            assert!(!interesting(&[]));
            assert!(!interesting(&[0xff; 7]));
            let mut m = link(IFF_UP_RUNNING);
            m[0] = 0xff; // a length past the end
            assert!(!interesting(&m));
        }
    }
}
