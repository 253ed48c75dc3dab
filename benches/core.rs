//! Costs of the pure core, without any network: envelope encode/decode, and the master's work
//! per page turn with N joined followers (the core's part of the master's CPU at 20 page
//! turns/s). Prints one JSON object per line; medians of repeated
//! runs, as the machines are shared and noisy.
//!
//! `cargo bench --bench core`

use lansync::protocol::{Envelope, Message, PageState};
use lansync::session::{Command, FollowerConfig, Input, JoinCredentials, Machine, MasterConfig};
use lansync::sim::Sim;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median over `rounds` of the mean time per call of `f` over `n` calls, in nanoseconds.
fn time_ns(rounds: usize, n: usize, mut f: impl FnMut()) -> f64 {
    let samples = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    median(samples)
}

fn codec() {
    let env = Envelope {
        session_id: "3f9c2a7be1d04c55".into(),
        sender_id: "master".into(),
        ts: 1_735_689_600_000,
        seq: 42,
        msg: Message::SetPage(PageState {
            song_id: Some("ave-maria".into()),
            song_epoch: 3,
            page_revision: 12,
            page_index: 5,
            at: None,
        }),
    };
    let text = env.encode().unwrap();
    let enc = time_ns(15, 20_000, || {
        black_box(black_box(&env).encode().unwrap());
    });
    let dec = time_ns(15, 20_000, || {
        black_box(Envelope::decode(black_box(text.as_bytes())).unwrap());
    });
    println!(
        "{{\"bench\":\"envelope\",\"bytes\":{},\"encode_ns\":{enc:.0},\"decode_ns\":{dec:.0}}}",
        text.len()
    );
}

/// A master with `n` joined followers, built on the simulated network, then driven directly.
fn fan_out(n: usize) {
    let mut sim = Sim::new(1);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    for i in 0..n {
        let f = sim.add_follower(FollowerConfig::new(format!("f{i}")), m);
        sim.command(
            f,
            Command::Join(JoinCredentials {
                token: Some(token.clone()),
                ..Default::default()
            }),
        );
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.master(m).count() as usize, n + 1);
    let Some(lansync::sim::Role::Master(master)) = sim.nodes[m].role.as_mut() else {
        unreachable!()
    };
    let now = sim.now;
    let mut page = 0u32;
    let turn_ns = time_ns(15, 200, || {
        page = (page + 1) % 1000;
        master.handle(now, Input::Command(&Command::SetPage { page }));
        while let Some(o) = master.poll_output() {
            black_box(&o);
        }
    });
    // Share of one core at 20 turns per second.
    let core_pct = turn_ns * 20.0 / 1e9 * 100.0;
    println!(
        "{{\"bench\":\"master_page_turn\",\"followers\":{n},\"per_turn_us\":{:.1},\"per_follower_ns\":{:.0},\"core_pct_at_20_turns_per_s\":{core_pct:.3}}}",
        turn_ns / 1000.0,
        turn_ns / n as f64
    );
}

fn main() {
    codec();
    for n in [8, 32, 100, 200] {
        fan_out(n);
    }
}
