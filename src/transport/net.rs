//! Sockets and candidate gathering: one UDP socket per usable interface address (so the
//! destination address of every datagram is known without IP_PKTINFO), large kernel buffers,
//! and optional server-reflexive addresses from STUN servers. Bulk traffic goes through the
//! kernel's UDP segmentation offloads: a run of equal-size datagrams to one peer leaves in one
//! `sendmsg` (UDP_SEGMENT, "GSO") and arrives coalesced in one `recvmsg` (UDP_GRO), which cuts
//! the per-datagram syscalls, route lookups and wake-ups that dominated the CPU cost.
//!
//! Written by hand rather than with `quinn-udp` and `if-addrs`, measured side by side (the
//! benches `throughput --quick` and `transport`, before and after runs interleaved on a shared
//! 2-core machine, medians):
//! - `quinn-udp` for the datagram IO (its `UdpSocketState::try_send` with a segment size, its
//!   `recv` for coalesced datagrams): CPU per MiB received and sent went from 3.02 to 3.52 ms
//!   over a veth pair and from 1.67 to 1.77 ms on loopback (21 runs before, 15 after), veth
//!   goodput from 304 to 156 MB/s (both paths noisy: 112–436 MB/s before, 109–445 after),
//!   loopback 415 → 413 MB/s. It wants a run in one contiguous buffer (a copy; here each
//!   datagram is its own slice in the iovec), and it turns on IP_PKTINFO, IP_RECVTOS and
//!   SO_TIMESTAMPNS for every socket, three control messages per receive nobody here reads.
//!   Link setup (0.66 vs 0.68 ms), control round trip (30.0 vs 30.6 µs), idle CPU (0.017 %
//!   of a core per link either way) and, at 2 % loss (`lossy --quick`, 4 runs each), page
//!   turns (1.33 vs 1.35 ms) and transfers (88 vs 93 MB/s) did not change.
//! - `if-addrs` for the interface list: it reports IFF_RUNNING but not IFF_UP, so the rule
//!   had to become "running"; a veth whose carrier was still coming up was then skipped, and
//!   the first veth run of the throughput bench failed to open its link (2 of 2 tries).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// Socket options of linux/udp.h (level IPPROTO_UDP), not exported by libc for every target.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Kernel limit on segments in one GSO send (UDP_MAX_SEGMENTS).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;
/// Payload limit of one GSO send: one IP datagram's worth, less headers.
pub(crate) const GSO_MAX_BYTES: usize = 65000;

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
    /// Segmented sends still allowed: cleared after the kernel refuses one (old kernels, or a
    /// device without checksum offload), after which datagrams go one per syscall.
    gso: AtomicBool,
}

/// A socket address in the C layout `sendmsg`/`recvmsg` use.
fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Room for a few control messages (one is 16 bytes on 64-bit); u64 elements keep it aligned
/// for cmsghdr.
type CmsgBuf = [u64; 8];

impl HostSocket {
    /// Sends `datagrams` to `peer`. All but the last must have the same length and the last
    /// must not be longer; at most [`GSO_MAX_SEGMENTS`] of them, [`GSO_MAX_BYTES`] in all.
    /// More than one go out in one segmented send when the kernel allows it. Never blocks: a
    /// full buffer drops them, which SCTP repairs like any loss.
    pub(crate) fn send_run(&self, peer: SocketAddr, datagrams: &[&[u8]]) -> std::io::Result<()> {
        if datagrams.len() > 1 && self.gso.load(Ordering::Relaxed) {
            match self.send_segmented(peer, datagrams) {
                Ok(()) => return Ok(()),
                // Refused as a whole (not a transient full buffer): stop trying.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) =>
                {
                    debug!("segmented UDP send refused ({e}); sending datagrams one by one");
                    self.gso.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let mut result = Ok(());
        for d in datagrams {
            if let Err(e) = self.send.send_to(d, peer) {
                result = Err(e);
            }
        }
        result
    }

    fn send_segmented(&self, peer: SocketAddr, datagrams: &[&[u8]]) -> std::io::Result<()> {
        let (mut name, name_len) = to_sockaddr(peer);
        let mut iov: [libc::iovec; GSO_MAX_SEGMENTS] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; GSO_MAX_SEGMENTS];
        for (v, d) in iov.iter_mut().zip(datagrams) {
            *v = libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
        }
        // The kernel wants exactly a u16 here (and gives a c_int back for UDP_GRO).
        let segment = u16::try_from(datagrams[0].len()).unwrap_or(u16::MAX);
        let mut control: CmsgBuf = [0; 8];
        // SAFETY: all-zero is a valid msghdr; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = name_len;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = datagrams.len().min(GSO_MAX_SEGMENTS) as _;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
        // SAFETY: msg_control points at `control`, which has room for one cmsg with a u16
        // (checked by CMSG_FIRSTHDR against msg_controllen).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            (*cmsg).cmsg_level = libc::IPPROTO_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
        }
        // SAFETY: msg describes live buffers; the fd is our open socket.
        let n = unsafe { libc::sendmsg(self.send.as_raw_fd(), &msg, 0) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives what is waiting (non-blocking): returns the byte count, the sender and the
    /// segment size when the kernel coalesced several equal datagrams (0: one datagram).
    pub(crate) fn recv_coalesced(
        &self,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, usize)> {
        self.io.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
            let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut control: CmsgBuf = [0; 8];
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of::<CmsgBuf>() as _;
            // SAFETY: msg describes live buffers; the fd is our open non-blocking socket.
            let n = unsafe { libc::recvmsg(self.io.as_raw_fd(), &mut msg, 0) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut segment = 0usize;
            // SAFETY: walking the control messages the kernel wrote, within msg_controllen.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::IPPROTO_UDP && (*cmsg).cmsg_type == UDP_GRO {
                        let v =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                        segment = usize::try_from(v).unwrap_or(0);
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
            }
            let from = from_sockaddr(&name)
                .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
            Ok((n as usize, from, segment))
        })
    }
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
    // Coalesced receives; harmless to lack (each datagram then arrives on its own).
    if !set_int(&std_sock, libc::IPPROTO_UDP, UDP_GRO, 1) {
        debug!("UDP_GRO not available");
    }
    let addr = std_sock.local_addr()?;
    let send = std_sock.try_clone()?;
    Ok(HostSocket {
        io: UdpSocket::from_std(std_sock)?,
        send,
        addr,
        gso: AtomicBool::new(true),
    })
}

/// Sets a socket buffer size: the FORCE option (works as root, beyond `rmem_max`) first, then
/// the plain one (capped by the system maximum).
fn set_buffer(sock: &std::net::UdpSocket, force: libc::c_int, plain: libc::c_int, size: usize) {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    if !set_int(sock, libc::SOL_SOCKET, force, value)
        && !set_int(sock, libc::SOL_SOCKET, plain, value)
    {
        debug!("could not set socket buffer option {plain}");
    }
}

/// Sets an integer socket option; true on success.
fn set_int(
    sock: &std::net::UdpSocket,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: the fd is a valid open socket owned by `sock`; the value pointer and length
    // describe a live c_int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
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
mod tests;
