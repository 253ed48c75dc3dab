//! The sender on a virtual clock: each test drives it by hand with SACKs.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::sctp::chunk::GapBlock;

const MTU: usize = 1200;
const ROOM: usize = MTU - COMMON_HEADER;
const T0_TSN: u32 = 1000;

fn cfg() -> SendConfig {
    SendConfig {
        mtu: MTU,
        rto_min: Duration::from_millis(10),
        rto_max: Duration::from_secs(1),
        rto_initial: Duration::from_millis(200),
        priority_streams: vec![0],
    }
}

fn sender(now: Instant) -> Sender {
    Sender::new(cfg(), T0_TSN, 1 << 20, now)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Every chunk the sender lets go at `now`, packet by packet.
fn drain(s: &mut Sender, now: Instant) -> Vec<Data> {
    let mut out = Vec::new();
    loop {
        let mut room = ROOM;
        let before = out.len();
        while let Some(d) = s.poll_data(now, room) {
            room -= chunk_len(d.payload.len());
            out.push(d);
        }
        if out.len() == before {
            return out;
        }
    }
}

fn sack(cum: u32, gaps: &[(u16, u16)], a_rwnd: u32) -> Sack {
    Sack {
        cum_tsn_ack: cum,
        a_rwnd,
        gaps: gaps
            .iter()
            .map(|&(start, end)| GapBlock { start, end })
            .collect(),
        duplicates: vec![],
    }
}

fn bytes(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

/// Sends one small message and acknowledges it after `rtt`, so the sender has a round trip.
fn measured(t0: Instant, rtt: Duration) -> (Sender, Instant) {
    let mut s = sender(t0);
    s.queue(1, 53, bytes(100), false).unwrap();
    let sent = drain(&mut s, t0);
    assert_eq!(sent.len(), 1);
    let now = t0 + rtt;
    s.on_sack(&sack(sent[0].tsn, &[], 1 << 20), now);
    (s, now)
}

#[test]
fn fragments_get_consecutive_tsns_flags_and_one_ssn() {
    let t0 = Instant::now();
    let mut s = sender(t0);
    s.queue(1, 53, bytes(3000), false).unwrap();
    s.queue(1, 53, bytes(10), true).unwrap();
    s.queue(1, 53, bytes(10), false).unwrap();
    assert_eq!(s.queue(1, 53, Bytes::new(), false), Err(SendError::Empty));
    assert_eq!(s.buffered(1), 3020);
    let out = drain(&mut s, t0);
    let lens: Vec<usize> = out.iter().map(|d| d.payload.len()).collect();
    assert_eq!(lens, vec![1156, 1156, 688, 10, 10]);
    let tsns: Vec<u32> = out.iter().map(|d| d.tsn).collect();
    assert_eq!(tsns, (T0_TSN..T0_TSN + 5).collect::<Vec<_>>());
    let flags: Vec<(bool, bool)> = out.iter().map(|d| (d.begin, d.end)).collect();
    assert_eq!(
        flags,
        vec![
            (true, false),
            (false, false),
            (false, true),
            (true, true),
            (true, true)
        ]
    );
    // The fragments share SSN 0; the unordered message does not advance the SSN.
    let ssns: Vec<u16> = out.iter().map(|d| d.ssn).collect();
    assert_eq!(&ssns[..3], &[0, 0, 0]);
    assert!(out[3].unordered);
    assert_eq!(ssns[4], 1);
    // Only the chunk after which nothing is queued asks for an immediate SACK.
    let imm: Vec<bool> = out.iter().map(|d| d.immediate).collect();
    assert_eq!(imm, vec![false, false, false, false, true]);
    assert_eq!(s.last_assigned_tsn(), T0_TSN + 4);
    s.on_sack(&sack(T0_TSN + 2, &[], 1 << 20), t0 + ms(1));
    assert_eq!(s.buffered(1), 20);
    assert_eq!(s.buffered_total(), 20);
}

#[test]
fn a_chunk_that_does_not_fit_the_room_waits_for_the_next_packet() {
    let t0 = Instant::now();
    let mut s = sender(t0);
    s.queue(1, 53, bytes(1000), false).unwrap();
    assert_eq!(s.poll_data(t0, 500), None);
    assert_eq!(s.buffered(1), 1000);
    let d = s.poll_data(t0, ROOM).unwrap();
    assert_eq!(d.payload.len(), 1000);
}

#[test]
fn rto_backs_off_and_resets_on_new_ack() {
    let t0 = Instant::now();
    let mut s = sender(t0);
    s.queue(1, 53, bytes(100), false).unwrap();
    assert_eq!(drain(&mut s, t0).len(), 1);
    // No round trip yet: the initial RTO, and no probe before it.
    assert_eq!(s.poll_timeout(), Some(t0 + ms(200)));
    s.handle_timeout(t0 + ms(200));
    assert_eq!(s.consecutive_timeouts(), 1);
    let again = drain(&mut s, t0 + ms(200));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].tsn, T0_TSN);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(600)), "doubled");
    s.handle_timeout(t0 + ms(600));
    assert_eq!(s.consecutive_timeouts(), 2);
    assert_eq!(drain(&mut s, t0 + ms(600)).len(), 1);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(1400)), "doubled again");
    s.on_sack(&sack(T0_TSN, &[], 1 << 20), t0 + ms(601));
    assert_eq!(s.consecutive_timeouts(), 0);
    assert_eq!(s.poll_timeout(), None, "nothing outstanding");
    // Karn: the only acknowledged chunk was resent, so still no round trip.
    assert_eq!(s.srtt(), None);
    // A chunk sent once gives a sample; the RTO then comes from it, clamped to rto_min.
    s.queue(1, 53, bytes(100), false).unwrap();
    let t1 = t0 + ms(700);
    drain(&mut s, t1);
    s.on_sack(&sack(T0_TSN + 1, &[], 1 << 20), t1 + us(400));
    assert_eq!(s.srtt(), Some(us(400)));
    let t2 = t1 + ms(1);
    s.queue(1, 53, bytes(100), false).unwrap();
    drain(&mut s, t2);
    s.pto_at = None; // look at the retransmission timer alone
    assert_eq!(s.poll_timeout(), Some(t2 + ms(10)));
}

#[test]
fn karn_ignores_acks_of_resent_chunks() {
    let t0 = Instant::now();
    let mut s = sender(t0);
    s.queue(1, 53, bytes(100), false).unwrap();
    drain(&mut s, t0);
    s.handle_timeout(t0 + ms(200));
    drain(&mut s, t0 + ms(200));
    // Acked 1 ms after the resend: a sample would say 1 ms or 201 ms, neither is known.
    s.on_sack(&sack(T0_TSN, &[], 1 << 20), t0 + ms(201));
    assert_eq!(s.srtt(), None);
}

/// Ten one-chunk messages in flight.
fn ten_in_flight(s: &mut Sender, now: Instant) -> Vec<Data> {
    for _ in 0..10 {
        s.queue(1, 53, bytes(1000), false).unwrap();
    }
    let out = drain(s, now);
    assert_eq!(out.len(), 10);
    out
}

#[test]
fn fast_retransmit_after_three_later_chunks_arrive_not_before() {
    let t0 = Instant::now();
    let (mut s, now) = measured(t0, us(300));
    let out = ten_in_flight(&mut s, now);
    let first = out[0].tsn;
    let cum = first - 1;
    // Two later chunks arrived: could be reordering.
    s.on_sack(&sack(cum, &[(2, 3)], 1 << 20), now + us(300));
    assert!(drain(&mut s, now + us(300)).is_empty());
    // A third: lost, resent at once, long before any timer.
    s.on_sack(&sack(cum, &[(2, 4)], 1 << 20), now + us(310));
    let rtx = drain(&mut s, now + us(310));
    assert_eq!(rtx.len(), 1);
    assert_eq!(rtx[0].tsn, first);
}

#[test]
fn a_lost_retransmission_is_found_again_without_the_timer() {
    let t0 = Instant::now();
    let (mut s, now) = measured(t0, us(300));
    let out = ten_in_flight(&mut s, now);
    let first = out[0].tsn;
    let cum = first - 1;
    let t1 = now + us(300);
    s.on_sack(&sack(cum, &[(2, 10)], 1 << 20), t1);
    let rtx = drain(&mut s, t1);
    assert_eq!(rtx.iter().map(|d| d.tsn).collect::<Vec<_>>(), vec![first]);
    // New data goes after the resend; the resend is lost, the new data arrives.
    for _ in 0..4 {
        s.queue(1, 53, bytes(1000), false).unwrap();
    }
    let t2 = t1 + us(10);
    let fresh = drain(&mut s, t2);
    assert_eq!(fresh.len(), 4);
    let t3 = t2 + us(300);
    s.on_sack(&sack(cum, &[(2, 14)], 1 << 20), t3);
    let again = drain(&mut s, t3);
    assert_eq!(again.iter().map(|d| d.tsn).collect::<Vec<_>>(), vec![first]);
    assert_eq!(s.consecutive_timeouts(), 0);
    assert!(s.poll_timeout().unwrap() > t3);
}

#[test]
fn a_lone_lost_message_is_probed_after_two_round_trips() {
    let t0 = Instant::now();
    let (mut s, now) = measured(t0, ms(2));
    let t1 = now + ms(5);
    s.queue(0, 51, bytes(80), false).unwrap();
    let out = drain(&mut s, t1);
    assert_eq!(out.len(), 1);
    assert!(out[0].immediate);
    let cwnd = s.cc.cwnd();
    // 2·srtt plus the lone-chunk allowance, well before the 10 ms RTO.
    let pto = s.poll_timeout().unwrap();
    assert_eq!(pto, t1 + ms(4) + PTO_LONE_EXTRA);
    s.handle_timeout(pto);
    let probe = drain(&mut s, pto);
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0].tsn, out[0].tsn);
    assert!(probe[0].immediate);
    assert_eq!(s.cc.cwnd(), cwnd, "a probe does not shrink the window");
    assert_eq!(s.consecutive_timeouts(), 0);
    // One probe only; then the retransmission timer, counted from the probe.
    assert_eq!(s.poll_timeout(), Some(pto + ms(10)));
}

#[test]
fn priority_goes_ahead_of_bulk_and_past_a_full_window() {
    let t0 = Instant::now();
    let (mut s, now) = measured(t0, us(300));
    s.queue(1, 53, bytes(16 * 1024), false).unwrap();
    s.queue(1, 53, bytes(16 * 1024), false).unwrap();
    let bulk = drain(&mut s, now);
    assert!(!bulk.is_empty());
    assert!(s.flight >= s.cc.cwnd(), "the window is full");
    assert!(s.unsent_count > 0, "mid-message");
    s.queue(0, 51, bytes(200), false).unwrap();
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].stream, 0);
    // Its TSN follows the started message's fragments, which are still to go.
    assert!(out[0].tsn > bulk.last().unwrap().tsn + 1);
    assert!(out[0].begin && out[0].end);
}

#[test]
fn priority_retransmission_goes_before_bulk_retransmission() {
    let t0 = Instant::now();
    let (mut s, now) = measured(t0, us(300));
    s.queue(1, 53, bytes(1000), false).unwrap();
    s.queue(0, 51, bytes(100), false).unwrap();
    s.queue(1, 53, bytes(1000), false).unwrap();
    let out = drain(&mut s, now);
    assert_eq!(out[0].stream, 0, "priority first");
    s.handle_timeout(now + ms(200));
    let rtx = drain(&mut s, now + ms(200));
    assert_eq!(rtx[0].stream, 0);
}

#[test]
fn bulk_leaves_a_reserve_of_the_peer_window_and_rule_a_allows_one_chunk() {
    let t0 = Instant::now();
    let mut s = Sender::new(cfg(), T0_TSN, 10_000, t0);
    for _ in 0..10 {
        s.queue(1, 53, bytes(1156), false).unwrap();
    }
    let out = drain(&mut s, t0);
    // 4 chunks fit with 4 MTU left free: 4·1156 + 1156 + 4800 > 10 000.
    assert_eq!(out.len(), 4);
    s.queue(0, 51, bytes(100), false).unwrap();
    assert_eq!(drain(&mut s, t0).len(), 1, "priority uses the reserve");
    // The peer's window closes: only once nothing is in flight may one chunk go (probe).
    let last = s.last_assigned_tsn();
    s.on_sack(&sack(last - 1, &[], 0), t0 + ms(1));
    assert!(drain(&mut s, t0 + ms(1)).is_empty());
    s.on_sack(&sack(last, &[], 0), t0 + ms(2));
    assert_eq!(drain(&mut s, t0 + ms(2)).len(), 1);
    assert!(drain(&mut s, t0 + ms(2)).is_empty());
}

#[test]
fn sacks_that_ack_unsent_or_old_tsns_are_ignored() {
    let t0 = Instant::now();
    let mut s = sender(t0);
    s.queue(1, 53, bytes(100), false).unwrap();
    drain(&mut s, t0);
    s.on_sack(&sack(T0_TSN + 5, &[], 1 << 20), t0 + ms(1));
    assert_eq!(s.buffered(1), 100);
    s.on_sack(
        &sack(T0_TSN - 10, &[(1, 65535), (0, 3)], 1 << 20),
        t0 + ms(1),
    );
    assert_eq!(s.buffered(1), 100);
    assert_eq!(s.flight, 100);
    // A window of 0 with garbage gaps does not break anything either.
    s.on_sack(&sack(T0_TSN - 1, &[(5, 2), (1, 65535)], 0), t0 + ms(1));
    assert_eq!(s.buffered(1), 100);
}

#[test]
fn loss_cuts_the_window_once_per_episode() {
    let t0 = Instant::now();
    let (mut s, now) = measured(t0, us(300));
    let out = ten_in_flight(&mut s, now);
    let cum = out[0].tsn - 1;
    let before = s.cc.cwnd();
    s.on_sack(&sack(cum, &[(2, 4)], 1 << 20), now + us(300));
    let after = s.cc.cwnd();
    assert!(after < before);
    assert!(s.cc.in_recovery());
    // A second loss in the same episode: no second cut.
    s.on_sack(&sack(cum, &[(2, 4), (6, 9)], 1 << 20), now + us(320));
    assert_eq!(s.cc.cwnd(), after);
}

#[test]
fn bursts_are_paced_to_64_kib_and_the_timer_wakes_for_more() {
    let t0 = Instant::now();
    let (mut s, mut now) = measured(t0, us(100));
    for _ in 0..64 {
        s.queue(1, 53, bytes(16 * 1024), false).unwrap();
    }
    let mut largest = 0;
    let mut woke = false;
    for _ in 0..12 {
        let out = drain(&mut s, now);
        let burst: usize = out.iter().map(|d| chunk_len(d.payload.len())).sum();
        assert!(
            burst <= 64 * 1024 + chunk_len(1156),
            "burst of {burst} bytes"
        );
        largest = largest.max(burst);
        if s.flight < s.cc.cwnd() && !woke {
            // Held back by pacing alone: the timer asks to come back shortly, with room.
            let wake = s.poll_timeout().unwrap();
            assert!(wake > now && wake <= now + ms(1), "{:?}", wake - now);
            s.handle_timeout(wake);
            assert!(!drain(&mut s, wake).is_empty());
            woke = true;
            now = wake;
        }
        now += us(100);
        s.on_sack(&sack(s.highest_sent, &[], 1 << 20), now);
    }
    assert!(woke, "the window outgrew the burst cap");
    assert!(largest > 60 * 1024);
}

#[test]
fn a_priority_chunk_acked_ahead_of_unsent_fragments_arms_no_timer() {
    let t0 = Instant::now();
    let now = t0;
    let mut s = Sender::new(cfg(), T0_TSN, 3000, t0);
    // A small peer window: one fragment of the file message, then the page turn overtakes.
    s.queue(1, 53, bytes(16 * 1024), false).unwrap();
    let first = drain(&mut s, now);
    assert_eq!(first.len(), 1);
    s.queue(0, 51, bytes(100), false).unwrap();
    let turn = drain(&mut s, now);
    assert_eq!(turn.len(), 1);
    assert_eq!(turn[0].stream, 0);
    let gap = (turn[0].tsn - first[0].tsn) as u16;
    // Both arrive; the peer's window is now shut, so the fragments in between wait.
    s.on_sack(&sack(first[0].tsn, &[(gap, gap)], 0), now + us(300));
    assert_eq!(s.flight, 0);
    assert!(s.unsent_count > 0);
    assert_eq!(s.rto_at, None, "nothing sent is missing");
    assert_eq!(s.pto_at, None);
    // Rule A: with nothing in flight one fragment still goes.
    assert_eq!(drain(&mut s, now + us(300)).len(), 1);
}

#[test]
fn a_full_fragment_fits_behind_a_sack_without_gaps() {
    let t0 = Instant::now();
    let mut s = sender(t0);
    s.queue(1, 53, bytes(16 * 1024), false).unwrap();
    let d = s.poll_data(t0, ROOM - SACK_MIN).unwrap();
    assert_eq!(chunk_len(d.payload.len()), ROOM - SACK_MIN);
}
