//! Checks of the other device: a host's join endpoint, a doctor listener over TCP and UDP, and
//! the isolation hint when nothing comes back.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::net::{self, Interfaces};
use super::probe::{self, GREETING};
use super::{Check, Status};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read from a join endpoint probe: a refusal is a few dozen bytes.
const MAX_ANSWER: usize = 4096;

/// A peer check, and whether anything at all came back from the peer's address.
pub(crate) struct PeerCheck {
    pub addr: SocketAddr,
    pub answered: bool,
    pub check: Check,
}

/// Why a connection did not open.
enum NotOpen {
    /// A reset came back: the device is there, nothing listens on that port.
    Refused,
    TimedOut,
    Failed(io::Error),
}

/// The open stream and how long it took.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<(TcpStream, Duration), NotOpen> {
    let start = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok((s, start.elapsed())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(NotOpen::Refused),
        Ok(Err(e)) => Err(NotOpen::Failed(e)),
        Err(_) => Err(NotOpen::TimedOut),
    }
}

/// Milliseconds to 0.01 ms: a LAN round trip is often under 0.1 ms.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// The sentence for a connection that did not open.
fn not_open(id: &'static str, addr: SocketAddr, c: &NotOpen, what: &str, start: &str) -> PeerCheck {
    let (outcome, answered, check) = match c {
        NotOpen::Refused => (
            "refused",
            true,
            Check::new(id, Status::Problem, format!("Nothing listens at {addr}: {what}."))
                .action(start.to_string()),
        ),
        NotOpen::TimedOut => (
            "timeout",
            false,
            Check::new(
                id,
                Status::Problem,
                format!(
                    "No answer from {addr} within {} s: the device is off, on another network, or a firewall drops the connection.",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )
            .action("Check that both devices are on the same Wi-Fi and awake; see the hints below."),
        ),
        NotOpen::Failed(e) => (
            "error",
            false,
            Check::new(id, Status::Problem, format!("Cannot reach {addr} ({e})."))
                .action("Connect to the Wi-Fi the other devices use."),
        ),
    };
    PeerCheck {
        addr,
        answered,
        check: check
            .facts(json!({"address": addr.to_string(), "outcome": outcome, "connect_ms": null})),
    }
}

/// TCP to a host's join endpoint, then a request it refuses in a known way: `{"v":0}` to the
/// start path is answered `400 {"error":"version_mismatch"}` (PROTOCOL.md §9.3, check 4),
/// before any nonce or session state is touched.
pub(crate) async fn join_endpoint(addr: SocketAddr) -> PeerCheck {
    let id = "join_endpoint";
    let connect_time = match connect(addr, CONNECT_TIMEOUT).await {
        Ok((_, t)) => t,
        Err(other) => {
            return not_open(
                id,
                addr,
                &other,
                "the host has stopped, or was started again on another port",
                "Ask the host for its current QR link, or start `lansync host` again.",
            )
        }
    };
    let (outcome, check) = match ask_endpoint(addr).await {
        Ok((status, error)) if error.is_some() => (
            "answered",
            Check::new(
                id,
                Status::Ok,
                format!(
                    "A lansync host's join endpoint answers at {addr} (connected in {} ms).",
                    ms(connect_time)
                ),
            )
            .facts(json!({"http_status": status, "error": error})),
        ),
        Ok((status, _)) => (
            "unexpected",
            Check::new(
                id,
                Status::Warning,
                format!(
                    "Something answers at {addr} (HTTP {status}), but not a lansync join endpoint."
                ),
            )
            .action("Check that the link is the host's current one."),
        ),
        Err(e) => (
            "unexpected",
            Check::new(
                id,
                Status::Warning,
                format!("Connected to {addr}, but it did not answer like a lansync host ({e})."),
            )
            .action("Check that the link is the host's current one."),
        ),
    };
    let mut facts = json!({"address": addr.to_string(), "outcome": outcome,
                           "connect_ms": ms(connect_time)});
    if let (Some(f), Some(extra)) = (facts.as_object_mut(), check.facts.as_object()) {
        f.extend(extra.clone());
    }
    PeerCheck {
        addr,
        answered: true,
        check: check.facts(facts),
    }
}

/// `(HTTP status, the join error when the body is one)`.
async fn ask_endpoint(addr: SocketAddr) -> Result<(u16, Option<String>), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .post(format!("http://{addr}{}", crate::signaling::START_PATH))
        .header("content-type", "application/json")
        .body(r#"{"v":0}"#)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Ok((status, None));
        }
        body.extend_from_slice(&chunk);
    }
    let error = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("error")?
                .as_str()
                .map(|s| crate::protocol::truncate(s, 40).to_string())
        });
    Ok((status, error))
}

/// TCP to a doctor listener: it greets every connection with [`GREETING`].
pub(crate) async fn listener_tcp(addr: SocketAddr) -> PeerCheck {
    let id = "peer_tcp";
    let (mut stream, connect_time) = match connect(addr, CONNECT_TIMEOUT).await {
        Ok(open) => open,
        Err(other) => {
            return not_open(
                id,
                addr,
                &other,
                "`lansync doctor --listen` is not running there, or on another port",
                "On the other device run `lansync doctor --listen` and use the address and port it prints.",
            )
        }
    };
    let mut buf = [0u8; 64];
    let mut got = 0;
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        while got < GREETING.len() {
            match stream.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    });
    let _ = read.await;
    let facts = json!({"address": addr.to_string(), "connect_ms": ms(connect_time)});
    let check = if buf[..got].starts_with(GREETING) {
        Check::new(
            id,
            Status::Ok,
            format!(
                "TCP gets through: `lansync doctor --listen` answers at {addr} (connected in {} ms).",
                ms(connect_time)
            ),
        )
    } else {
        Check::new(
            id,
            Status::Warning,
            format!("TCP gets through to {addr}, but something other than `lansync doctor --listen` answers there."),
        )
        .action("Check the port that `lansync doctor --listen` printed on the other device.")
    };
    let mut facts = facts;
    facts["outcome"] = json!(if check.status == Status::Ok {
        "answered"
    } else {
        "unexpected"
    });
    PeerCheck {
        addr,
        answered: true,
        check: check.facts(facts),
    }
}

/// UDP probes to a doctor listener: round trips and loss.
pub(crate) async fn listener_udp(addr: SocketAddr, n: u32, wait: Duration) -> PeerCheck {
    let r = probe::round_trips(addr, n, wait).await;
    let mut rtts = r.rtts.clone();
    rtts.sort();
    let received = rtts.len() as u32;
    let sent = r.sent.max(1);
    let loss = 100.0 * f64::from(sent - received.min(sent)) / f64::from(sent);
    let rtt = |d: Option<&Duration>| d.map(|d| ms(*d));
    let facts = json!({
        "address": addr.to_string(), "sent": r.sent, "received": received,
        "loss_percent": (loss * 10.0).round() / 10.0, "refused": r.refused, "error": r.error,
        "rtt_ms": if rtts.is_empty() { json!(null) } else {
            json!({"min": rtt(rtts.first()), "median": rtt(rtts.get(rtts.len() / 2)), "max": rtt(rtts.last())})
        },
    });
    let id = "peer_udp";
    let (answered, check) = if received > 0 && received >= r.sent {
        (
            true,
            Check::new(
                id,
                Status::Ok,
                format!(
                    "UDP gets through: {received} of {} probes came back, round trip {} ms (max {} ms).",
                    r.sent,
                    rtt(rtts.get(rtts.len() / 2)).unwrap_or_default(),
                    rtt(rtts.last()).unwrap_or_default()
                ),
            ),
        )
    } else if received > 0 {
        (
            true,
            Check::new(
                id,
                Status::Warning,
                format!(
                    "{} of {} UDP probes to {addr} were lost ({loss:.0} %): links will work but may stall on this network.",
                    r.sent - received,
                    r.sent
                ),
            )
            .action("Move closer to the Wi-Fi access point, or use a less busy network."),
        )
    } else if r.refused {
        (
            true,
            Check::new(
                id,
                Status::Problem,
                format!("Nothing answers UDP at {addr}: the other device says that port is closed."),
            )
            .action("On the other device run `lansync doctor --listen` and use the address and port it prints."),
        )
    } else if let Some(e) = &r.error {
        (
            false,
            Check::new(
                id,
                Status::Problem,
                format!("UDP probes to {addr} could not be sent ({e})."),
            )
            .action("Connect to the Wi-Fi the other devices use."),
        )
    } else {
        (
            false,
            Check::new(
                id,
                Status::Problem,
                format!(
                    "UDP does not get through: none of {} probes to {addr} came back, and lansync's links need UDP.",
                    r.sent
                ),
            )
            .action(
                "A firewall on the other device (or on this one) likely drops UDP: allow UDP from \
                 the local network there; `lansync doctor --listen` shows that device's rules.",
            ),
        )
    };
    PeerCheck {
        addr,
        answered,
        check: check.facts(facts),
    }
}

/// Why a peer on this network may not answer: compares with the router, when there is one.
pub(crate) async fn isolation(addr: SocketAddr, ours: &Interfaces) -> Check {
    let same = net::same_subnet(addr.ip(), &ours.usable);
    let gateway = if addr.is_ipv4() {
        net::default_gateway()
    } else {
        None
    };
    let gateway_answers = match gateway {
        Some(g) if same => answers(g).await,
        _ => false,
    };
    hint(addr.ip(), same, gateway, gateway_answers)
}

/// Whether the router answers TCP at all (a connection or a reset) on a port routers serve.
async fn answers(gateway: Ipv4Addr) -> bool {
    for port in [80, 53] {
        let addr = SocketAddr::new(gateway.into(), port);
        if matches!(
            connect(addr, Duration::from_secs(1)).await,
            Ok(_) | Err(NotOpen::Refused)
        ) {
            return true;
        }
    }
    false
}

/// Pure, so every case is unit-tested. Phrased as likely causes: a device that is off looks the
/// same from here as one kept apart by the Wi-Fi.
pub(crate) fn hint(
    peer: IpAddr,
    same: bool,
    gateway: Option<Ipv4Addr>,
    gateway_answers: bool,
) -> Check {
    let facts = json!({"peer": peer.to_string(), "same_subnet": same,
                       "gateway": gateway.map(|g| g.to_string()), "gateway_answers": gateway_answers});
    let check = match (same, gateway) {
        (false, _) => Check::new(
            "isolation",
            Status::Warning,
            format!("The other device ({peer}) is not on this device's subnet, so it is likely on another network."),
        )
        .action("Connect both devices to the same Wi-Fi (not a guest network next to the main one)."),
        (true, Some(g)) if gateway_answers => Check::new(
            "isolation",
            Status::Warning,
            format!(
                "The router ({g}) answers but the other device does not: the Wi-Fi likely keeps devices apart (client isolation, common on guest networks), unless the other device is off or blocks everything."
            ),
        )
        .action(
            "Check that the other device is awake and on this Wi-Fi; if it is, use a network \
             without client isolation (e.g. a phone's hotspot) or turn isolation off in the router.",
        ),
        (true, Some(g)) => Check::new(
            "isolation",
            Status::Warning,
            format!("Neither the other device nor the router ({g}) answers: this device's connection may be broken."),
        )
        .action("Reconnect this device to the Wi-Fi and try again."),
        (true, None) => Check::new(
            "isolation",
            Status::Warning,
            "The other device does not answer, and there is no router to compare with: it may be off, asleep, or blocking everything.",
        )
        .action("Check that the other device is awake and on this network, and run `lansync doctor --listen` there."),
    };
    check.facts(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_hints_say_likely_causes() {
        let peer: IpAddr = "192.168.1.7".parse().unwrap();
        let gw = Some(Ipv4Addr::new(192, 168, 1, 1));
        let c = hint(peer, true, gw, true);
        assert!(c.message.contains("client isolation"), "{}", c.message);
        assert!(c.message.contains("likely"));
        assert_eq!(c.status, Status::Warning);
        assert!(hint(peer, true, gw, false).message.contains("Neither"));
        assert!(hint(peer, false, gw, true)
            .message
            .contains("not on this device's subnet"));
        let none = hint(peer, true, None, false);
        assert!(none.message.contains("no router"));
        assert_eq!(none.facts["gateway"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_not_silent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = listener_tcp(SocketAddr::from(([127, 0, 0, 1], port))).await;
        assert!(c.answered);
        assert_eq!(c.check.status, Status::Problem);
        assert_eq!(c.check.facts["outcome"], "refused");
    }

    #[tokio::test]
    async fn a_join_endpoint_is_recognised_by_its_known_refusal() {
        use crate::session::DoorReply;
        let door: crate::signaling::Door =
            std::sync::Arc::new(|_| Box::pin(async { DoorReply::closed() }));
        let server = crate::signaling::serve("127.0.0.1:0".parse().unwrap(), door, |_| async {
            Err(crate::protocol::RejectReason::Unknown)
        })
        .await
        .unwrap();
        let c = join_endpoint(server.local_addr()).await;
        assert_eq!(c.check.status, Status::Ok, "{}", c.check.message);
        assert_eq!(c.check.facts["http_status"], 400);
        assert_eq!(c.check.facts["error"], "version_mismatch");

        // Something else on a port: not taken for a host.
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = other.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = other.accept().await {
                let _ = s
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let c = join_endpoint(addr).await;
        assert_eq!(c.check.status, Status::Warning, "{}", c.check.message);
        assert_eq!(c.check.facts["outcome"], "unexpected");
    }

    #[tokio::test]
    async fn a_listener_greets_and_echoes() {
        let l = probe::Listener::bind(0, false).await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], l.port()));
        let tcp = listener_tcp(addr).await;
        assert_eq!(tcp.check.status, Status::Ok, "{}", tcp.check.message);
        let udp = listener_udp(addr, 4, Duration::from_secs(10)).await;
        assert_eq!(udp.check.status, Status::Ok, "{}", udp.check.message);
        assert_eq!(udp.check.facts["loss_percent"], 0.0);
    }
}
