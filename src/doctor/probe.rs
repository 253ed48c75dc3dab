//! The doctor's probes and `lansync doctor --listen`, which answers them.
//!
//! **Not part of the session protocol** (PROTOCOL.md): a diagnostic aid that no lansync
//! session sends or answers. On the listener's port `P` (default [`DEFAULT_PORT`]):
//! - **UDP echo.** A probe is exactly [`PROBE_LEN`] (24) bytes: [`MAGIC`] (`LSDOCTOR`), a kind
//!   byte (`1` probe, `2` echo), three zero bytes, a sequence number (u32, big-endian) and a
//!   token (u64, big-endian, random per run). The listener answers a probe by sending the same
//!   24 bytes back with the kind byte set to `2`; it ignores every other datagram, and answers
//!   at most [`ECHO_RATE`] probes per second in total, so it cannot be used to flood anyone (an
//!   echo is no larger than its probe).
//! - **TCP greeting.** Every connection gets [`GREETING`] (`lansync-doctor 1\n`) and is closed.
//! - **mDNS.** It advertises `listen-<random>._lansync-doctor._udp.local.` on port `P`, so a
//!   doctor on another device can tell whether multicast crosses the network.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::mdns;

/// The listener's port when none is given.
pub const DEFAULT_PORT: u16 = 47_390;
/// First bytes of every probe and echo.
pub const MAGIC: &[u8; 8] = b"LSDOCTOR";
/// Length of a probe and of its echo.
pub const PROBE_LEN: usize = 24;
/// Kind byte of a probe.
pub const KIND_PROBE: u8 = 1;
/// Kind byte of an echo.
pub const KIND_ECHO: u8 = 2;
/// What the listener writes on every TCP connection before closing it.
pub const GREETING: &[u8] = b"lansync-doctor 1\n";
/// Most probes answered per second, in total.
pub const ECHO_RATE: u32 = 200;
/// Most probes one run sends.
pub const MAX_PROBES: u32 = 1000;
/// Time between two probes.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// TCP connections the listener serves at once; more are closed at once.
const MAX_GREETINGS: usize = 64;

/// A probe or echo: `(kind, seq, token)`.
pub fn encode(kind: u8, seq: u32, token: u64) -> [u8; PROBE_LEN] {
    let mut b = [0u8; PROBE_LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8] = kind;
    b[12..16].copy_from_slice(&seq.to_be_bytes());
    b[16..24].copy_from_slice(&token.to_be_bytes());
    b
}

/// Reads a probe or echo; `None` for anything else.
pub fn decode(b: &[u8]) -> Option<(u8, u32, u64)> {
    if b.len() != PROBE_LEN || &b[..8] != MAGIC || b[9..12] != [0, 0, 0] {
        return None;
    }
    let kind = b[8];
    if kind != KIND_PROBE && kind != KIND_ECHO {
        return None;
    }
    let seq = u32::from_be_bytes(b[12..16].try_into().ok()?);
    let token = u64::from_be_bytes(b[16..24].try_into().ok()?);
    Some((kind, seq, token))
}

/// `lansync doctor --listen`: answers probes until stopped or dropped.
pub struct Listener {
    port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    advert: Option<mdns::Advert>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Listens on UDP and TCP `port` of every address (0 picks a free port for both) and, with
    /// `advertise`, advertises itself with mDNS (skipped, with a log line, when mDNS cannot
    /// start). Must be called inside a tokio runtime.
    pub async fn bind(port: u16, advertise: bool) -> io::Result<Listener> {
        let (udp, tcp) = bind_pair(port).await?;
        let port = udp.local_addr()?.port();
        let tasks = vec![tokio::spawn(echo(udp)), tokio::spawn(greet(tcp))];
        let advert = if advertise {
            match mdns::Advert::start(port) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(%e, "cannot advertise the doctor listener over mDNS");
                    None
                }
            }
        } else {
            None
        };
        Ok(Listener {
            port,
            tasks,
            advert,
        })
    }

    /// The UDP and TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops answering and withdraws the mDNS advert (waiting briefly for its goodbye).
    pub async fn stop(mut self) {
        if let Some(advert) = self.advert.take() {
            advert.stop().await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// UDP and TCP on the same port: dual-stack `[::]` where the system has it, else IPv4.
async fn bind_pair(port: u16) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    // With port 0 the UDP port may be taken for TCP: try a few.
    for _ in 0..8 {
        let udp = match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(s) => s,
            Err(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).await?,
        };
        let local = udp.local_addr()?;
        match TcpListener::bind(SocketAddr::new(local.ip(), local.port())).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if port == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

async fn echo(sock: UdpSocket) {
    let mut buf = [0u8; 64];
    let mut budget = ECHO_RATE;
    let mut window = Instant::now();
    loop {
        let Ok((len, from)) = sock.recv_from(&mut buf).await else {
            // ICMP errors of earlier echoes surface here on some systems: keep going, without
            // spinning should the error persist.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some((KIND_PROBE, seq, token)) = decode(&buf[..len]) else {
            continue;
        };
        let now = Instant::now();
        if now.duration_since(window) >= Duration::from_secs(1) {
            window = now;
            budget = ECHO_RATE;
        }
        if budget == 0 {
            continue;
        }
        budget -= 1;
        let _ = sock.send_to(&encode(KIND_ECHO, seq, token), from).await;
    }
}

async fn greet(tcp: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_GREETINGS));
    loop {
        let Ok((mut stream, _)) = tcp.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                stream.write_all(GREETING).await?;
                stream.shutdown().await
            })
            .await;
            drop(slot);
        });
    }
}

/// What came back from UDP probes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RoundTrips {
    pub sent: u32,
    /// Round trip of each answered probe.
    pub rtts: Vec<Duration>,
    /// The peer's system said nothing listens on that port (ICMP port unreachable).
    pub refused: bool,
    /// A local error that kept probes from leaving (e.g. no route).
    pub error: Option<String>,
}

/// Sends `n` probes to `addr`, [`PROBE_INTERVAL`] apart, and waits up to `wait` after the last
/// for their echoes (less when every probe was answered).
pub(crate) async fn round_trips(addr: SocketAddr, n: u32, wait: Duration) -> RoundTrips {
    let mut out = RoundTrips::default();
    let local: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = match UdpSocket::bind((local, 0)).await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    // Connected, so an ICMP "port unreachable" is reported to us as a refusal.
    if let Err(e) = sock.connect(addr).await {
        out.error = Some(e.to_string());
        return out;
    }
    let mut token_bytes = [0u8; 8];
    if getrandom::fill(&mut token_bytes).is_err() {
        // Only tells this run's echoes from another's: a fixed token still works.
        token_bytes = *b"ldoctor!";
    }
    let token = u64::from_be_bytes(token_bytes);
    let n = n.clamp(1, MAX_PROBES) as usize;
    let mut sent_at: Vec<Option<Instant>> = vec![None; n];
    let mut answered = vec![false; n];
    let mut next = 0usize;
    let mut next_send = Instant::now();
    let mut deadline = None::<Instant>;
    let mut buf = [0u8; 64];
    while out.rtts.len() < n {
        let until = if next < n {
            next_send
        } else {
            deadline.unwrap_or_else(Instant::now)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {
                if next >= n {
                    break;
                }
                match sock.send(&encode(KIND_PROBE, next as u32, token)).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => out.refused = true,
                    Err(e) => out.error = Some(e.to_string()),
                }
                let now = Instant::now();
                sent_at[next] = Some(now);
                next += 1;
                next_send += PROBE_INTERVAL;
                if next == n {
                    deadline = Some(now + wait);
                }
            }
            got = sock.recv(&mut buf) => match got {
                Ok(len) => {
                    if let Some((KIND_ECHO, seq, t)) = decode(&buf[..len]) {
                        let seq = seq as usize;
                        if t == token && seq < n && !answered[seq] {
                            if let Some(at) = sent_at[seq] {
                                answered[seq] = true;
                                out.rtts.push(at.elapsed());
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => out.refused = true,
                Err(_) => {}
            },
        }
    }
    out.sent = next as u32;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_round_trip_and_garbage_is_refused() {
        let p = encode(KIND_PROBE, 7, 0xdead_beef_0102_0304);
        assert_eq!(p.len(), PROBE_LEN);
        assert_eq!(decode(&p), Some((KIND_PROBE, 7, 0xdead_beef_0102_0304)));
        assert_eq!(decode(&p[..23]), None);
        let mut bad = p;
        bad[8] = 3;
        assert_eq!(decode(&bad), None);
        let mut bad = p;
        bad[10] = 1;
        assert_eq!(decode(&bad), None);
        let mut bad = p;
        bad[0] = b'X';
        assert_eq!(decode(&bad), None);
        let mut long = p.to_vec();
        long.push(0);
        assert_eq!(decode(&long), None);
    }

    #[tokio::test]
    async fn a_listener_answers_every_probe_on_loopback() {
        let listener = Listener::bind(0, false).await.expect("bind");
        let addr: SocketAddr = (Ipv4Addr::LOCALHOST, listener.port()).into();
        let r = round_trips(addr, 5, Duration::from_secs(10)).await;
        assert_eq!(r.sent, 5);
        assert_eq!(r.rtts.len(), 5, "{r:?}");
        assert!(!r.refused);
        listener.stop().await;
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_refused() {
        // A port just freed: nothing listens there.
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = round_trips(
            (Ipv4Addr::LOCALHOST, port).into(),
            3,
            Duration::from_millis(300),
        )
        .await;
        assert!(r.rtts.is_empty());
        assert!(r.refused, "{r:?}");
    }
}
