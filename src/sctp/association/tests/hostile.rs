//! Junk and mutated packets never panic the association, in any state.

use std::time::Duration;

use super::*;
use crate::sctp::packet;

/// Real packets of a lossy exchange, each mutated many ways (checksum fixed so the junk
/// reaches the chunk parser), fed to associations in every state.
#[test]
fn mutated_packets_never_panic() {
    let path = Path {
        loss: 0.05,
        ..Path::default()
    };
    let mut p = Pair::new(Config::default(), Config::default(), path, 11);
    let mut captured: Vec<Vec<u8>> = Vec::new();
    p.a.connect(p.now);
    // Capture the handshake and some traffic.
    for _ in 0..200 {
        while let Some(pk) = p.a.poll_transmit(p.now) {
            captured.push(pk.clone());
            p.transmit(Dir::AtoB, pk);
        }
        while let Some(pk) = p.b.poll_transmit(p.now) {
            captured.push(pk.clone());
            p.transmit(Dir::BtoA, pk);
        }
        if p.a.is_established() && p.a.buffered(1) == 0 {
            let _ = p.a.send(1, 53, message(1, 5000), false);
            let _ = p.a.send(0, 51, message(2, 10), true);
        }
        if !p.step() {
            break;
        }
    }
    assert!(captured.len() > 20);
    let mut rng = Rng::new(5);
    let mut victims = vec![
        Association::new(Config::default(), seed(1), p.now),
        Association::new(Config::default(), seed(2), p.now),
    ];
    victims[0].connect(p.now);
    victims.push(Pair::clean().connected().b);
    for round in 0..20_000usize {
        let mut pk = captured[round % captured.len()].clone();
        let flips = 1 + (rng.next_u64() % 8) as usize;
        for _ in 0..flips {
            let i = (rng.next_u64() as usize) % pk.len();
            pk[i] = rng.next_u64() as u8;
        }
        if rng.next_u64() % 4 == 0 {
            let cut = (rng.next_u64() as usize) % pk.len();
            pk.truncate(cut.max(12));
        }
        packet::finish(&mut pk);
        let v = &mut victims[round % 3];
        let now = p.now + Duration::from_micros(round as u64);
        v.handle_packet(now, &pk);
        while v.poll_transmit(now).is_some() {}
        while v.poll_event().is_some() {}
        if let Some(t) = v.poll_timeout() {
            v.handle_timeout(t.max(now));
        }
    }
    // Pure junk, too.
    for n in 0..2_000usize {
        let junk: Vec<u8> = (0..n % 300).map(|_| rng.next_u64() as u8).collect();
        victims[2].handle_packet(p.now, &junk);
    }
}
