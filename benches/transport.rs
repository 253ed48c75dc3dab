//! Transport figures on loopback: link setup time, control round trip, idle CPU.
//! Prints one JSON object per line. Run: `cargo bench --bench transport`.

use std::time::{Duration, Instant};

use lansync::transport::{
    accept_offer, create_offer, Link, LinkEvent, TransportConfig, MAX_BINARY_MESSAGE,
};

const SETUP_PAIRS: usize = 30;
const PINGS: usize = 2000;
const WARMUP_PINGS: usize = 200;
const IDLE: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(20);
const THROUGHPUT_BYTES: usize = 256 * 1024 * 1024;

fn cfg() -> TransportConfig {
    TransportConfig {
        loopback_only: true,
        ..Default::default()
    }
}

/// Returns (offerer, answerer, time from create_offer call, time from offer created).
async fn pair() -> (Link, Link, Duration, Duration) {
    let t0 = Instant::now();
    let offer = create_offer(&cfg()).await.expect("offer");
    let t1 = Instant::now();
    let (answer, mut b) = accept_offer(&cfg(), offer.sdp()).await.expect("answer");
    let mut a = offer.accept_answer(&answer).await.expect("accept");
    let (ra, rb) = tokio::join!(a.wait_open(DEADLINE), b.wait_open(DEADLINE));
    ra.expect("open a");
    rb.expect("open b");
    let end = Instant::now();
    (a, b, end - t0, end - t1)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

async fn bench_setup() {
    // Warm-up: the process identity is generated on first use.
    let (a, b, _, _) = pair().await;
    a.close().await;
    b.close().await;

    let mut total = Vec::new();
    let mut from_offer = Vec::new();
    for _ in 0..SETUP_PAIRS {
        let (a, b, t, t_offer) = pair().await;
        total.push(t.as_secs_f64() * 1e3);
        from_offer.push(t_offer.as_secs_f64() * 1e3);
        a.close().await;
        b.close().await;
    }
    total.sort_by(f64::total_cmp);
    from_offer.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"setup_loopback\",\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"n\":{},\"from\":\"create_offer call\"}}",
        percentile(&total, 0.5),
        percentile(&total, 0.99),
        percentile(&total, 1.0),
        SETUP_PAIRS
    );
    println!(
        "{{\"bench\":\"setup_loopback_from_offer\",\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"n\":{},\"from\":\"offer created\"}}",
        percentile(&from_offer, 0.5),
        percentile(&from_offer, 0.99),
        SETUP_PAIRS
    );
}

async fn bench_rtt() {
    let (mut a, mut b, _, _) = pair().await;
    let sb = b.sender();
    let echo = tokio::spawn(async move {
        while let Some(ev) = b.recv().await {
            if let LinkEvent::Control(s) = ev {
                if sb.send_control(&s).await.is_err() {
                    break;
                }
            }
        }
    });
    let sa = a.sender();
    let msg = "p".repeat(100);
    let mut rtts = Vec::with_capacity(PINGS);
    for i in 0..WARMUP_PINGS + PINGS {
        let t0 = Instant::now();
        sa.send_control(&msg).await.expect("send");
        loop {
            match tokio::time::timeout(DEADLINE, a.recv()).await {
                Ok(Some(LinkEvent::Control(_))) => break,
                Ok(Some(_)) => continue,
                _ => panic!("no echo"),
            }
        }
        if i >= WARMUP_PINGS {
            rtts.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"control_rtt_100B_loopback\",\"p50_us\":{:.1},\"p99_us\":{:.1},\"n\":{}}}",
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
        PINGS
    );
    a.close().await;
    let _ = echo.await;
}

async fn bench_throughput() {
    let (a, mut b, _, _) = pair().await;
    let sa = a.sender();
    let n = THROUGHPUT_BYTES / MAX_BINARY_MESSAGE;
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        let msg = vec![7u8; MAX_BINARY_MESSAGE];
        for _ in 0..n {
            sa.send_binary(&msg).await.expect("send");
        }
    });
    let mut got = 0usize;
    while got < THROUGHPUT_BYTES {
        match tokio::time::timeout(DEADLINE, b.recv()).await {
            Ok(Some(LinkEvent::Binary(d))) => got += d.len(),
            Ok(Some(_)) => {}
            _ => panic!("transfer stalled"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = sender.await;
    println!(
        "{{\"bench\":\"binary_throughput_16KiB_loopback\",\"mb_per_s\":{:.0},\"bytes\":{},\"seconds\":{:.2}}}",
        got as f64 / secs / 1e6,
        got,
        secs
    );
    a.close().await;
    b.close().await;
}

async fn bench_idle() {
    let (a, b, _, _) = pair().await;
    // Let setup leftovers (delayed acks) settle first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c0 = cpu_time();
    let w0 = Instant::now();
    tokio::time::sleep(IDLE).await;
    let cpu = cpu_time() - c0;
    let wall = w0.elapsed();
    let both = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!(
        "{{\"bench\":\"idle_cpu_open_link\",\"percent_of_core_per_link\":{:.4},\"percent_of_core_both_ends\":{:.4},\"seconds\":{:.1}}}",
        both / 2.0,
        both,
        wall.as_secs_f64()
    );
    a.close().await;
    b.close().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        bench_setup().await;
        bench_rtt().await;
        bench_throughput().await;
        bench_idle().await;
    });
}
