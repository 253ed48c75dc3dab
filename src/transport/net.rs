//! Sockets and candidate gathering: one UDP socket per usable interface address (so the
//! destination address of every datagram is known without IP_PKTINFO), large kernel buffers,
//! and optional server-reflexive addresses from STUN servers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rtc::stun::message::{Getter, Message, TransactionId, BINDING_REQUEST};
use rtc::stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::TransportError;

/// Kernel receive buffer asked for. The 208 KiB default drops datagrams under bulk transfer.
const RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Kernel send buffer asked for: sends never block, so a full buffer would be a local drop.
const SEND_BUFFER: usize = 4 * 1024 * 1024;
/// STUN requests are repeated this often until answered or the gathering time runs out.
const STUN_RESEND: Duration = Duration::from_millis(300);

/// One bound UDP socket of a link.
pub(crate) struct HostSocket {
    /// Registered with tokio, for receiving.
    pub(crate) io: UdpSocket,
    /// The same socket (duplicated descriptor, non-blocking) for sending. Sends go through it
    /// rather than tokio's `try_send_to`, which refuses to write until the reactor has seen a
    /// writable event: on a new socket that dropped the first connectivity check.
    pub(crate) send: std::net::UdpSocket,
    /// The bound address (the host candidate).
    pub(crate) addr: SocketAddr,
}

/// Binds one socket per address to advertise.
pub(crate) fn bind_host_sockets(loopback_only: bool) -> Result<Vec<HostSocket>, TransportError> {
    let addrs = if loopback_only {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    } else {
        let found = interface_addresses();
        if found.is_empty() {
            warn!("no usable LAN interface address; falling back to loopback");
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        } else {
            found
        }
    };
    let mut sockets = Vec::new();
    for ip in addrs {
        match bind_one(ip) {
            Ok(s) => sockets.push(s),
            Err(e) => warn!(%ip, "cannot bind UDP socket: {e}"),
        }
    }
    if sockets.is_empty() {
        return Err(TransportError::NoInterface);
    }
    Ok(sockets)
}

fn bind_one(ip: IpAddr) -> std::io::Result<HostSocket> {
    let std_sock = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    std_sock.set_nonblocking(true)?;
    set_buffer(
        &std_sock,
        libc::SO_RCVBUFFORCE,
        libc::SO_RCVBUF,
        RECV_BUFFER,
    );
    set_buffer(
        &std_sock,
        libc::SO_SNDBUFFORCE,
        libc::SO_SNDBUF,
        SEND_BUFFER,
    );
    let addr = std_sock.local_addr()?;
    let send = std_sock.try_clone()?;
    Ok(HostSocket {
        io: UdpSocket::from_std(std_sock)?,
        send,
        addr,
    })
}

/// Sets a socket buffer size: the FORCE option (works as root, beyond `rmem_max`) first, then
/// the plain one (capped by the system maximum).
fn set_buffer(sock: &std::net::UdpSocket, force: libc::c_int, plain: libc::c_int, size: usize) {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: fd is a valid open socket owned by `sock`; the value pointer and length
        // describe a live c_int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(force) && !set(plain) {
        debug!("could not set socket buffer option {plain}");
    }
}

/// Addresses of up, non-loopback interfaces: IPv4, and IPv6 other than link-local (which would
/// need scope ids in candidates).
pub(crate) fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        warn!("getifaddrs failed: {}", std::io::Error::last_os_error());
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let flags = ifa.ifa_flags;
        if flags & libc::IFF_UP as libc::c_uint == 0
            || flags & libc::IFF_LOOPBACK as libc::c_uint != 0
            || ifa.ifa_addr.is_null()
        {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose family tells its type.
        let family = libc::c_int::from(unsafe { (*ifa.ifa_addr).sa_family });
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: family AF_INET means the storage is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: family AF_INET6 means the storage is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let v6 = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                    continue;
                }
                IpAddr::V6(v6)
            }
            _ => continue,
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// `host[:port]` of a `stun:` URL, with the default port added when missing.
fn stun_host_port(url: &str) -> Option<String> {
    let rest = url.strip_prefix("stun:")?;
    let rest = rest.split('?').next().unwrap_or(rest);
    let has_port = if let Some(v6) = rest.strip_prefix('[') {
        v6.contains("]:")
    } else {
        rest.contains(':')
    };
    Some(if has_port {
        rest.to_owned()
    } else {
        format!("{rest}:3478")
    })
}

/// A binding request not yet answered: (socket index, server, transaction, encoded request).
type Pending = (usize, SocketAddr, TransactionId, Vec<u8>);

/// Asks each STUN server for the public address of each socket. Returns (base, mapped) pairs.
/// Waits at most `timeout`; servers that do not answer are skipped.
pub(crate) async fn gather_srflx(
    sockets: &[HostSocket],
    servers: &[String],
    timeout: Duration,
) -> Vec<(SocketAddr, SocketAddr)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut targets = Vec::new();
    for url in servers {
        let Some(hostport) = stun_host_port(url) else {
            warn!(%url, "only stun: ICE servers are supported; ignoring");
            continue;
        };
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host(hostport)).await {
            Ok(Ok(addrs)) => targets.extend(addrs),
            Ok(Err(e)) => warn!(%url, "cannot resolve ICE server: {e}"),
            Err(_) => warn!(%url, "resolving ICE server timed out"),
        }
    }
    // A loopback socket has no public mapping to learn.
    stun_exchange(sockets, &targets, deadline, false).await
}

/// Sends binding requests from each socket (loopback ones only if `include_loopback`) to each
/// target of the same family, and collects the mapped addresses until `deadline`.
async fn stun_exchange(
    sockets: &[HostSocket],
    targets: &[SocketAddr],
    deadline: tokio::time::Instant,
    include_loopback: bool,
) -> Vec<(SocketAddr, SocketAddr)> {
    let mut pending: Vec<Pending> = Vec::new();
    for (i, s) in sockets.iter().enumerate() {
        let local = s.addr;
        if local.ip().is_loopback() && !include_loopback {
            continue;
        }
        for t in targets.iter().filter(|t| t.is_ipv4() == local.is_ipv4()) {
            let mut m = Message::new();
            if m.build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
                .is_err()
            {
                continue;
            }
            let _ = s.send.send_to(&m.raw, *t);
            pending.push((i, *t, m.transaction_id, m.raw.clone()));
        }
    }

    let mut found = Vec::new();
    if pending.is_empty() {
        return found;
    }
    let mut resend = tokio::time::Instant::now() + STUN_RESEND;
    let mut buf = vec![0u8; 2048];
    while !pending.is_empty() {
        let recv = std::future::poll_fn(|cx| super::driver::poll_recv_any(sockets, cx, &mut buf));
        let got = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep_until(resend) => None,
            r = recv => r.ok(),
        };
        let Some((i, n, from)) = got else {
            for (i, t, _, raw) in &pending {
                let _ = sockets[*i].send.send_to(raw, *t);
            }
            resend += STUN_RESEND;
            continue;
        };
        let mut m = Message::new();
        m.raw = buf[..n].to_vec();
        if m.decode().is_err() {
            continue;
        }
        let Some(pos) = pending
            .iter()
            .position(|(pi, pt, tid, _)| *pi == i && *pt == from && *tid == m.transaction_id)
        else {
            continue;
        };
        pending.remove(pos);
        let mut xor = XorMappedAddress::default();
        if xor.get_from(&m).is_err() {
            continue;
        }
        let base = sockets[i].addr;
        let mapped = SocketAddr::new(xor.ip, xor.port);
        if mapped != base && !found.contains(&(base, mapped)) {
            found.push((base, mapped));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_urls() {
        assert_eq!(
            stun_host_port("stun:example.org").as_deref(),
            Some("example.org:3478")
        );
        assert_eq!(
            stun_host_port("stun:example.org:19302").as_deref(),
            Some("example.org:19302")
        );
        assert_eq!(stun_host_port("stun:[::1]").as_deref(), Some("[::1]:3478"));
        assert_eq!(stun_host_port("stun:[::1]:5").as_deref(), Some("[::1]:5"));
        assert_eq!(stun_host_port("turn:example.org"), None);
    }

    /// A tiny STUN server answers with a made-up public address, which becomes a
    /// server-reflexive candidate; the first request is dropped to exercise the resend.
    #[tokio::test]
    async fn stun_exchange_finds_the_mapped_address() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let public: SocketAddr = "203.0.113.7:4242".parse().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut first = true;
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                if std::mem::take(&mut first) {
                    continue;
                }
                let mut req = Message::new();
                req.raw = buf[..n].to_vec();
                if req.decode().is_err() {
                    continue;
                }
                let mut resp = Message::new();
                let built = resp.build(&[
                    Box::new(req.transaction_id),
                    Box::new(rtc::stun::message::BINDING_SUCCESS),
                    Box::new(XorMappedAddress {
                        ip: public.ip(),
                        port: public.port(),
                    }),
                ]);
                if built.is_ok() {
                    let _ = server.send_to(&resp.raw, from).await;
                }
            }
        });
        let client = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let base = client.addr;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let found = stun_exchange(&[client], &[server_addr], deadline, true).await;
        assert_eq!(found, vec![(base, public)]);
    }

    /// Loopback sockets are never sent to STUN servers, and an unanswered gathering returns
    /// at its deadline.
    #[tokio::test]
    async fn gathering_skips_loopback_and_respects_the_deadline() {
        let client = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let t0 = std::time::Instant::now();
        let found = gather_srflx(
            &[client],
            &["stun:127.0.0.1:9".to_owned(), "turn:127.0.0.1".to_owned()],
            Duration::from_millis(300),
        )
        .await;
        assert!(found.is_empty());
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
