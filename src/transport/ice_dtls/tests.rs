//! Two ICE + DTLS ends wired back to back in memory, on a virtual clock.

use super::testing::*;
use super::*;
use crate::transport::Identity;

/// Two ends wired back to back in memory, on a virtual clock.
struct Pair {
    a: IceDtls,
    b: IceDtls,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    now: Instant,
}

impl Pair {
    fn new(b_presents: Option<&Identity>) -> Self {
        let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let a_addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2000".parse().unwrap();
        let now = Instant::now();
        let a = IceDtls::new(config(&ia, &ib, a_addr, b_addr, true), now).unwrap();
        let b_id = b_presents.unwrap_or(&ib);
        let b = IceDtls::new(config(b_id, &ia, b_addr, a_addr, false), now).unwrap();
        Pair {
            a,
            b,
            a_addr,
            b_addr,
            now,
        }
    }

    /// Moves datagrams until both are quiet, then advances the clock to the next timer;
    /// `steps` times. Returns the events of each side.
    fn run(&mut self, steps: usize) -> (Vec<IceDtlsEvent>, Vec<IceDtlsEvent>) {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for _ in 0..steps {
            loop {
                let mut moved = false;
                while let Some(t) = self.a.poll_transmit() {
                    assert_eq!((t.local, t.remote), (self.a_addr, self.b_addr));
                    self.b
                        .handle_datagram(self.now, self.b_addr, self.a_addr, &t.data);
                    moved = true;
                }
                while let Some(t) = self.b.poll_transmit() {
                    assert_eq!((t.local, t.remote), (self.b_addr, self.a_addr));
                    self.a
                        .handle_datagram(self.now, self.a_addr, self.b_addr, &t.data);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
            ea.extend(std::iter::from_fn(|| self.a.poll_event()));
            eb.extend(std::iter::from_fn(|| self.b.poll_event()));
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            self.now = self.now.max(next);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
        }
        (ea, eb)
    }
}

fn secured(events: &[IceDtlsEvent]) -> bool {
    events.iter().any(|e| matches!(e, IceDtlsEvent::Secured))
}

fn records(events: Vec<IceDtlsEvent>) -> Vec<Vec<u8>> {
    events
        .into_iter()
        .filter_map(|e| match e {
            IceDtlsEvent::Record(r) => Some(r.to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn ice_then_dtls_come_up_and_carry_records_both_ways() {
    let mut p = Pair::new(None);
    let (ea, eb) = p.run(50);
    assert!(secured(&ea) && secured(&eb), "{ea:?} / {eb:?}");
    assert!(p.a.is_secured() && p.b.is_secured());
    let now = p.now;
    p.a.send_record(now, b"from the offerer");
    p.b.send_record(now, &[7u8; 16 * 1024]);
    let (ea, eb) = p.run(1);
    assert_eq!(records(eb), vec![b"from the offerer".to_vec()]);
    assert_eq!(records(ea), vec![vec![7u8; 16 * 1024]]);
}

#[test]
fn a_peer_with_another_certificate_is_never_secured() {
    let impostor = Identity::generate().unwrap();
    let mut p = Pair::new(Some(&impostor));
    let (ea, eb) = p.run(200);
    assert!(!secured(&ea), "{ea:?}");
    assert!(!p.a.is_secured());
    let now = p.now;
    p.a.send_record(now, b"secret");
    let (_, eb2) = p.run(1);
    assert!(records(eb).is_empty() && records(eb2).is_empty());
}

#[test]
fn dtls_from_a_stranger_is_dropped() {
    let mut p = Pair::new(None);
    let (ea, _) = p.run(50);
    assert!(secured(&ea));
    let stranger: SocketAddr = "10.0.0.9:9999".parse().unwrap();
    let now = p.now;
    // A ClientHello-shaped record from an address ICE never met: no reply, no event.
    let mut junk = vec![22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30];
    junk.extend([1u8; 30]);
    p.a.handle_datagram(now, p.a_addr, stranger, &junk);
    assert!(p.a.poll_transmit().is_none());
    assert!(p.a.poll_event().is_none());
}
