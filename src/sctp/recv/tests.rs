use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

fn cfg() -> RecvConfig {
    RecvConfig {
        receive_window: 10_000,
        max_message_size: 4_000,
        ack_delay: Duration::from_millis(5),
        inbound_streams: 16,
    }
}

fn data(tsn: u32, stream: u16, ssn: u16, b: bool, e: bool, len: usize) -> Data {
    Data {
        tsn,
        stream,
        ssn,
        ppid: 53,
        unordered: false,
        begin: b,
        end: e,
        immediate: false,
        payload: Bytes::from(vec![tsn as u8; len]),
    }
}

fn whole(tsn: u32, stream: u16, ssn: u16, len: usize) -> Data {
    data(tsn, stream, ssn, true, true, len)
}

fn drain(r: &mut Receiver) -> Vec<(u16, usize)> {
    let mut out = Vec::new();
    while let Some(d) = r.pop() {
        if let Delivery::Message {
            stream, payload, ..
        } = d
        {
            out.push((stream, payload.len()));
        }
    }
    out
}

#[test]
fn in_order_messages_are_delivered_and_acked_every_second_packet() {
    let t0 = Instant::now();
    let mut r = Receiver::new(cfg(), 100);
    r.on_data(whole(100, 0, 0, 10)).unwrap();
    r.end_packet(t0);
    assert!(!r.ack_due(t0), "a lone packet waits for the delayed ack");
    assert!(r.ack_due(t0 + Duration::from_millis(5)));
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(5)));
    r.on_data(whole(101, 0, 1, 10)).unwrap();
    r.end_packet(t0);
    assert!(r.ack_due(t0), "the second packet is acked at once");
    let s = r.sack();
    assert_eq!(s.cum_tsn_ack, 101);
    assert!(s.gaps.is_empty());
    assert_eq!(s.a_rwnd, 10_000 - 20);
    r.on_sack_sent();
    assert!(!r.ack_pending());
    assert_eq!(drain(&mut r), vec![(0, 10), (0, 10)]);
    assert_eq!(r.rwnd(), 10_000);
}

#[test]
fn gaps_duplicates_and_serial_wraparound() {
    let t0 = Instant::now();
    let first = u32::MAX - 2;
    let mut r = Receiver::new(cfg(), first);
    // first, (hole), first+2, first+3 (= 0 after the wrap), (hole), first+5
    for (i, tsn) in [
        first,
        first.wrapping_add(2),
        first.wrapping_add(3),
        first.wrapping_add(5),
    ]
    .into_iter()
    .enumerate()
    {
        r.on_data(whole(tsn, 0, i as u16, 4)).unwrap();
    }
    assert!(r.ack_due(t0), "a gap is reported at once");
    let s = r.sack();
    assert_eq!(s.cum_tsn_ack, first);
    assert_eq!(
        s.gaps,
        vec![GapBlock { start: 2, end: 3 }, GapBlock { start: 5, end: 5 }]
    );
    r.on_sack_sent();
    r.on_data(whole(first.wrapping_add(2), 0, 1, 4)).unwrap();
    assert!(r.ack_due(t0), "a duplicate is reported at once");
    assert_eq!(r.sack().duplicates, vec![first.wrapping_add(2)]);
    r.on_sack_sent();
    r.on_data(whole(first.wrapping_add(1), 0, 9, 4)).unwrap();
    let s = r.sack();
    assert_eq!(s.cum_tsn_ack, first.wrapping_add(3));
    assert_eq!(s.gaps, vec![GapBlock { start: 2, end: 2 }]);
    assert!(s.duplicates.is_empty());
}

#[test]
fn duplicates_and_gaps_are_capped() {
    let mut r = Receiver::new(cfg(), 1);
    for tsn in (3..3 + 2 * 200).step_by(2) {
        r.on_data(whole(tsn, 0, tsn as u16, 1)).unwrap();
    }
    for _ in 0..40 {
        r.on_data(whole(3, 0, 3, 1)).unwrap();
    }
    let s = r.sack();
    assert_eq!(s.gaps.len(), MAX_GAPS);
    assert_eq!(s.gaps[0], GapBlock { start: 3, end: 3 });
    assert_eq!(s.duplicates.len(), MAX_DUPLICATES);
}

#[test]
fn tsn_far_ahead_is_dropped() {
    let mut r = Receiver::new(cfg(), 1);
    r.on_data(whole(1 + 70_000, 0, 0, 10)).unwrap();
    assert_eq!(r.held(), 0);
    assert!(r.sack().gaps.is_empty());
    r.on_data(whole(1 + 2_000_000_000, 0, 0, 10)).unwrap();
    assert_eq!(r.held(), 0);
}

#[test]
fn fragments_reassemble_in_any_order() {
    let mut r = Receiver::new(cfg(), 10);
    r.on_data(data(12, 0, 0, false, true, 100)).unwrap();
    r.on_data(data(10, 0, 0, true, false, 100)).unwrap();
    assert!(r.pop().is_none());
    assert_eq!(r.held(), 200);
    r.on_data(data(11, 0, 0, false, false, 100)).unwrap();
    let Some(Delivery::Message { payload, .. }) = r.pop() else {
        panic!("message expected")
    };
    assert_eq!(&payload[..100], &[10u8; 100][..]);
    assert_eq!(&payload[100..200], &[11u8; 100][..]);
    assert_eq!(&payload[200..], &[12u8; 100][..]);
    assert_eq!(r.held(), 0);
}

#[test]
fn hole_in_one_stream_does_not_hold_back_another() {
    let mut r = Receiver::new(cfg(), 1);
    // stream 1: a fragmented message whose first fragment is lost
    r.on_data(data(2, 1, 0, false, true, 100)).unwrap();
    // stream 0: a control message after it
    r.on_data(whole(3, 0, 0, 20)).unwrap();
    assert_eq!(drain(&mut r), vec![(0, 20)]);
    r.on_data(data(1, 1, 0, true, false, 100)).unwrap();
    assert_eq!(drain(&mut r), vec![(1, 200)]);
}

#[test]
fn ordered_within_stream_unordered_at_once() {
    let mut r = Receiver::new(cfg(), 1);
    r.on_data(whole(2, 0, 1, 5)).unwrap();
    let mut u = whole(3, 0, 0, 7);
    u.unordered = true;
    r.on_data(u).unwrap();
    assert_eq!(drain(&mut r), vec![(0, 7)], "unordered is not held back");
    r.on_data(whole(1, 0, 0, 3)).unwrap();
    assert_eq!(drain(&mut r), vec![(0, 3), (0, 5)]);
}

#[test]
fn message_over_the_cap_is_refused_at_its_first_chunk_past_it() {
    // Ordered, with a hole: counted per (stream, SSN).
    let mut r = Receiver::new(cfg(), 1);
    r.on_data(data(1, 0, 0, true, false, 1_500)).unwrap();
    r.on_data(data(3, 0, 0, false, false, 1_500)).unwrap();
    let e = r.on_data(data(5, 0, 0, false, false, 1_500)).unwrap_err();
    assert!(matches!(e, RecvError::MessageTooLarge { size: 4_500, .. }));
    assert!(e.to_string().contains("message too large"));
    // Unordered, in a run.
    let mut r = Receiver::new(cfg(), 1);
    for tsn in 1..=2 {
        let mut d = data(tsn, 0, 0, tsn == 1, false, 1_500);
        d.unordered = true;
        r.on_data(d).unwrap();
    }
    let mut d = data(3, 0, 0, false, false, 1_500);
    d.unordered = true;
    assert!(r.on_data(d).is_err());
    // A whole message exactly at the cap is fine; one byte more is not.
    let mut r = Receiver::new(cfg(), 1);
    r.on_data(whole(1, 0, 0, 4_000)).unwrap();
    assert!(r.on_data(whole(2, 0, 1, 4_001)).is_err());
}

#[test]
fn empty_data_is_a_protocol_violation() {
    let mut r = Receiver::new(cfg(), 1);
    assert_eq!(r.on_data(whole(1, 0, 0, 0)), Err(RecvError::NoUserData));
}

#[test]
fn window_pushes_back_a_non_reading_application() {
    let t0 = Instant::now();
    let mut r = Receiver::new(cfg(), 1);
    for tsn in 1..=3 {
        r.on_data(whole(tsn, 0, tsn as u16 - 1, 3_000)).unwrap();
    }
    assert_eq!(r.rwnd(), 1_000);
    r.on_sack_sent();
    // Over the window, with a message to read: dropped (not acknowledged).
    r.on_data(whole(4, 0, 3, 3_000)).unwrap();
    assert_eq!(r.cum_tsn(), 3);
    assert!(r.ack_due(t0), "the sender hears the window is shut");
    assert_eq!(r.held(), 9_000);
    r.on_sack_sent();
    // Reading opens the window and announces it.
    assert!(r.pop().is_some());
    assert!(r.ack_due(t0), "window update after reading");
    assert_eq!(r.sack().a_rwnd, 4_000);
    r.on_data(whole(4, 0, 3, 3_000)).unwrap();
    assert_eq!(r.cum_tsn(), 4);
}

#[test]
fn window_full_of_fragments_takes_the_chunk_that_fills_the_lowest_hole() {
    let mut c = cfg();
    c.receive_window = 3_000;
    c.max_message_size = 100_000;
    let mut r = Receiver::new(c, 1);
    // A message whose head is lost fills the window with its tail.
    for tsn in 2..=4 {
        r.on_data(data(tsn, 0, 0, false, tsn == 4, 1_000)).unwrap();
    }
    assert_eq!(r.rwnd(), 0);
    // Beyond the highest: dropped.
    r.on_data(whole(5, 0, 1, 1_000)).unwrap();
    assert_eq!(r.sack().gaps, vec![GapBlock { start: 2, end: 4 }]);
    // The lowest hole: taken, the message completes.
    r.on_data(data(1, 0, 0, true, false, 1_000)).unwrap();
    assert_eq!(r.cum_tsn(), 4);
    assert_eq!(drain(&mut r), vec![(0, 4_000)]);
}

#[test]
fn data_on_a_stream_out_of_range_is_acked_and_dropped() {
    let mut r = Receiver::new(cfg(), 1);
    r.on_data(whole(1, 99, 0, 10)).unwrap();
    assert_eq!(r.cum_tsn(), 1);
    assert_eq!(r.held(), 0);
    assert!(r.pop().is_none());
}

#[test]
fn outgoing_reset_is_deferred_until_its_last_tsn_then_performed() {
    let mut r = Receiver::new(cfg(), 1);
    r.on_data(whole(1, 1, 0, 10)).unwrap();
    // The peer reset stream 1 after TSN 2, which is still missing.
    r.on_outgoing_reset(1, 2, &[1]);
    assert_eq!(
        r.take_reset_responses(),
        vec![(1, reset_result::IN_PROGRESS)]
    );
    // A message sent after the reset (new SSN 0) arrives before the last old one.
    r.on_data(whole(3, 1, 0, 30)).unwrap();
    // The retransmitted request is still in progress.
    r.on_outgoing_reset(1, 2, &[1]);
    assert_eq!(
        r.take_reset_responses(),
        vec![(1, reset_result::IN_PROGRESS)]
    );
    r.on_data(whole(2, 1, 1, 20)).unwrap();
    assert_eq!(r.take_reset_responses(), vec![(1, reset_result::PERFORMED)]);
    let got: Vec<Delivery> = std::iter::from_fn(|| r.pop()).collect();
    let lens: Vec<String> = got
        .iter()
        .map(|d| match d {
            Delivery::Message { payload, .. } => payload.len().to_string(),
            Delivery::StreamsReset(s) => format!("reset{s:?}"),
        })
        .collect();
    assert_eq!(lens, vec!["10", "20", "reset[1]", "30"]);
    // A retransmission now gets "performed"; a request out of sequence is refused.
    r.on_outgoing_reset(1, 2, &[1]);
    r.on_outgoing_reset(7, 3, &[1]);
    assert_eq!(
        r.take_reset_responses(),
        vec![
            (1, reset_result::PERFORMED),
            (7, reset_result::BAD_SEQUENCE)
        ]
    );
    // Any other request is denied, in sequence.
    r.on_other_request(2);
    assert_eq!(r.take_reset_responses(), vec![(2, reset_result::DENIED)]);
}

#[test]
fn reset_with_everything_arrived_is_performed_at_once() {
    let mut r = Receiver::new(cfg(), 5);
    r.on_data(whole(5, 0, 0, 1)).unwrap();
    r.on_outgoing_reset(5, 5, &[0]);
    assert_eq!(r.take_reset_responses(), vec![(5, reset_result::PERFORMED)]);
    assert!(matches!(r.pop(), Some(Delivery::Message { .. })));
    assert_eq!(r.pop(), Some(Delivery::StreamsReset(vec![0])));
    r.on_data(whole(6, 0, 0, 1)).unwrap();
    assert!(
        matches!(r.pop(), Some(Delivery::Message { .. })),
        "SSN 0 again"
    );
}

#[test]
fn bogus_messages_past_the_window_are_capped() {
    // A hostile peer fills the window with ordered messages that can never be delivered (SSNs
    // far ahead), then keeps sending the next TSN: at most one message size is taken past
    // the window.
    let mut r = Receiver::new(cfg(), 1);
    for tsn in 1..=400u32 {
        r.on_data(whole(tsn, 0, 1000 + tsn as u16, 100)).unwrap();
    }
    assert!(r.pop().is_none());
    assert!(r.held() <= 10_000 + 4_000, "held {}", r.held());
    assert!(r.held() >= 10_000);
}
