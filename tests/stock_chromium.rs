//! A stock headless Chromium as the peer of lansync's transport: the page
//! (`tests/stock/chromium_peer.js`) is a lansync peer written from PROTOCOL.md §1 alone (two
//! negotiated channels, the ready marker), driven over the Chrome DevTools Protocol on
//! `--remote-debugging-pipe` (NUL-terminated JSON on the child's fds 3 and 4).
//!
//! Chromium never runs in this machine's own network namespace: each test builds two namespaces,
//! `L` (lansync: the test's runtime threads enter it) and `C`, joined by a veth pair
//! (10.231.7.1 in `L`, 10.231.7.2 in `C`), each with a default route to the other (a page
//! without camera permission offers only the default route's address as a host candidate);
//! neither forwards, so nothing leaves the pair. Most tests run Chromium in `C`, like a device on
//! the LAN, where nftables can drop packets at random; one runs it in `L` beside lansync, which
//! then uses its loopback settings (127.0.0.1, 16 KiB SCTP packets). Those browsers show their
//! local addresses in candidates; the `hiding` tests leave Chromium's default on, as a phone's
//! browser does (every host candidate a random `<uuid>.local` name lansync cannot resolve), on a
//! bridged LAN of namespaces (`tests/browser/lan.rs`): lansync in one, browsers in others.
//!
//! Needs root, iproute2, `chromium` (or `LANSYNC_CHROMIUM=/path/to/chrome`) and, for the lossy
//! tests, nftables. Without them each test says why and passes — unless `CI` is set, when it
//! fails. Run: `cargo test --release --test stock_chromium -- --nocapture` (figures go to stdout,
//! one JSON object per line). `LANSYNC_LOG` shows lansync's logs; `LANSYNC_CHROMIUM_ARGS` and
//! `LANSYNC_CHROMIUM_LOG` Chromium's (see `Browser::launch` in `tests/browser/mod.rs`).
#![cfg(feature = "native")]

// The DevTools driver and the bridged LAN, shared with `tests/browser_followers.rs`.
mod browser;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use browser::lan::netns::{self, ip};
use browser::lan::{in_netns, Lan};
use browser::{Addresses, Browser, Env};
use lansync::transport::{
    accept_offer, create_offer, Link, LinkEvent, TransportConfig, MAX_BINARY_MESSAGE,
    MAX_CONTROL_MESSAGE,
};
use serde_json::{json, Value};

const PEER_JS: &str = include_str!("stock/chromium_peer.js");
const READY_MARKER: &str = r#"{"lansync":"ready"}"#;
/// Generous: setup takes milliseconds, but CI machines are slow and shared.
const DEADLINE: Duration = Duration::from_secs(15);
/// The stream of the throughput tests: 1221 messages of 16 KiB, 20.0 MB.
const STREAM_MESSAGES: usize = 1221;
/// Tries of the `a=setup:passive` answer: with `rtc` 0.21's SCTP, 1 to 5 tries in 60 lose the
/// page's first messages (its DATA arrives right behind COOKIE-ACK, before the offerer has bound
/// its negotiated channels), so 100 tries catch that with ~98 % odds. A good try takes ~0.2 s.
const PASSIVE_TRIES: usize = 100;
/// How long a passive try may take to open: ~25 ms when it works; a lost ready marker is never
/// sent again, so waiting longer would not save a try.
const PASSIVE_OPEN: Duration = Duration::from_secs(5);
/// Setups tried across 5 % loss.
const LOSSY_SETUPS: usize = 10;
/// What the page sends right behind its ready marker when it answers (PROTOCOL.md §1 lets the
/// answering side send as soon as its channels are open): the offerer's first messages.
const EARLY: [&str; 2] = ["early 1", "early 2"];

// ---------------------------------------------------------------------------------------------
// Two namespaces and a veth pair.

const L_ADDR: &str = "10.231.7.1";
const C_ADDR: &str = "10.231.7.2";

/// Namespaces `l` (lansync) and `c` (Chromium when apart), deleted on drop.
struct Net {
    l: String,
    c: String,
}

static NET_SEQ: AtomicU32 = AtomicU32::new(0);

impl Net {
    fn new() -> Net {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            NET_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let net = Net {
            l: format!("lschrome{tag}-l"),
            c: format!("lschrome{tag}-c"),
        };
        net.build().expect("build the namespaces");
        net
    }

    fn build(&self) -> Result<(), String> {
        ip(&["netns", "add", &self.l])?;
        ip(&["netns", "add", &self.c])?;
        // Created straight inside the namespaces: no name in this machine's own namespace.
        ip(&[
            "link", "add", "lsch0", "netns", &self.l, "mtu", "1500", "type", "veth", "peer",
            "name", "lsch1", "netns", &self.c, "mtu", "1500",
        ])?;
        for (ns, dev, addr, other) in [
            (&self.l, "lsch0", L_ADDR, C_ADDR),
            (&self.c, "lsch1", C_ADDR, L_ADDR),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            // A page without camera permission gets one host candidate: the address of the
            // default route (none without one). Neither namespace forwards, so nothing sent
            // this way leaves the pair.
            ip(&["-n", ns, "route", "add", "default", "via", other])?;
        }
        Ok(())
    }

    /// Drops `percent` % of the UDP packets entering and leaving `c`, at random.
    fn set_loss(&self, percent: u32) -> Result<(), String> {
        netns::set_loss(&self.c, f64::from(percent), "udp")
    }
}

/// UDP datagrams the kernel of namespace `ns` dropped for a full socket receive buffer
/// (`RcvbufErrors` of /proc/net/snmp, counted per namespace since it was made).
fn udp_rcvbuf_errors(ns: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the pair.
        let _ = ip(&["netns", "del", &self.l]);
        let _ = ip(&["netns", "del", &self.c]);
    }
}

/// Runs `body` in lansync's namespace with a headless Chromium placed as `place` (its namespace
/// losing the given share of UDP), given the browser and the namespaces `[lansync, Chromium]`.
/// Skips (or fails under `CI`) when root, `ip`, `chromium` or, for loss, `nft` is missing.
fn with_chromium<F>(place: Place, body: impl FnOnce(Browser, [String; 2]) -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let loss = match place {
        Place::Loopback => 0,
        Place::Veth(p) => p,
    };
    let Some(env) = Env::get(loss > 0) else {
        return;
    };
    let net = Net::new();
    if loss > 0 {
        net.set_loss(loss).expect("set the loss");
    }
    let l = net.l.clone();
    let ns = match place {
        Place::Loopback => net.l.clone(),
        Place::Veth(_) => net.c.clone(),
    };
    let chromium = env.chromium.clone();
    in_netns(&net.l, move || async move {
        let b = Browser::launch(&chromium, &ns, Addresses::Shown).await;
        b.eval(PEER_JS, DEADLINE).await.expect("load the peer");
        body(b, [l, ns]).await;
    });
}

/// `peer.NAME(args…)` in a page holding `tests/stock/chromium_peer.js`.
trait Peer {
    async fn peer(&self, name: &str, args: &[Value], deadline: Duration) -> Result<Value, String>;
}

impl Peer for Browser {
    async fn peer(&self, name: &str, args: &[Value], deadline: Duration) -> Result<Value, String> {
        let args: Vec<String> = args.iter().map(Value::to_string).collect();
        self.eval(&format!("peer.{name}({})", args.join(", ")), deadline)
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Links between lansync and the page.

fn cfg(loopback: bool) -> TransportConfig {
    TransportConfig {
        loopback_only: loopback,
        ..Default::default()
    }
}

/// lansync offers, the page answers (`passive`: with its answer munged to `a=setup:passive`).
/// Returns the link once lansync reports it open (it heard the page's ready marker), and how long
/// that took from the moment lansync had the answer.
async fn lansync_offers(
    b: &Browser,
    loopback: bool,
    passive: bool,
) -> Result<(Link, Duration), String> {
    let open_deadline = if passive { PASSIVE_OPEN } else { DEADLINE };
    let offer = create_offer(&cfg(loopback))
        .await
        .map_err(|e| format!("create_offer: {e}"))?;
    let answer = b
        .peer(
            "answer",
            &[json!(offer.sdp()), json!(passive), json!(EARLY)],
            DEADLINE,
        )
        .await?;
    let answer = answer.as_str().ok_or("no answer SDP")?;
    if passive && !answer.contains("a=setup:passive") {
        return Err(format!("the page's answer is not passive:\n{answer}"));
    }
    let connecting = Instant::now();
    let mut link = offer
        .accept_answer(answer)
        .await
        .map_err(|e| format!("accept_answer: {e}"))?;
    link.wait_open(open_deadline).await.map_err(|e| {
        format!("lansync's link did not open (the page's ready marker never reached it?): {e}")
    })?;
    let connect = connecting.elapsed();
    b.peer("open", &[json!(DEADLINE.as_millis() as u64)], DEADLINE)
        .await?;
    Ok((link, connect))
}

/// The page offers, lansync answers; both sides open. Also returns how long lansync took to
/// open from the moment it had the offer. `hidden`: the offer must carry only mDNS names
/// (`<uuid>.local`) as candidates, as a phone's does.
async fn chromium_offers(
    b: &Browser,
    loopback: bool,
    hidden: bool,
) -> Result<(Link, Duration), String> {
    let offer = b.peer("offer", &[], DEADLINE).await?;
    let offer = offer.as_str().ok_or("no offer SDP")?;
    if hidden {
        check_hidden(offer)?;
    }
    let connecting = Instant::now();
    let (answer, mut link) = accept_offer(&cfg(loopback), offer)
        .await
        .map_err(|e| format!("accept_offer: {e}"))?;
    b.peer("acceptAnswer", &[json!(answer)], DEADLINE).await?;
    link.wait_open(DEADLINE)
        .await
        .map_err(|e| format!("lansync's link did not open: {e}"))?;
    let connect = connecting.elapsed();
    b.peer("open", &[json!(DEADLINE.as_millis() as u64)], DEADLINE)
        .await?;
    Ok((link, connect))
}

/// The next control message lansync delivers (connectivity blips skipped).
async fn next_control(link: &mut Link) -> Result<String, String> {
    loop {
        match tokio::time::timeout(DEADLINE, link.recv()).await {
            Err(_) => return Err("no control message in time".into()),
            Ok(None) | Ok(Some(LinkEvent::Closed)) => return Err("the link closed".into()),
            Ok(Some(LinkEvent::Control(text))) => return Ok(text),
            Ok(Some(LinkEvent::Binary(b))) => {
                return Err(format!("binary message of {} bytes", b.len()))
            }
            Ok(Some(_)) => {}
        }
    }
}

/// The first `n` control messages the page received.
async fn page_inbox(b: &Browser, n: usize) -> Result<Vec<String>, String> {
    let v = b
        .peer(
            "inbox",
            &[json!(n), json!(DEADLINE.as_millis() as u64)],
            DEADLINE,
        )
        .await?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// How a received big message is summarised by the page (`inbox`).
fn summary(text: &str) -> String {
    format!("{}…({} bytes)", &text[..16], text.len())
}

/// Right after an offered link opened: lansync reads the page's early messages (sent behind the
/// marker, they race lansync's binding of its channels), then one each way.
async fn first_messages(b: &Browser, link: &mut Link) -> Result<(), String> {
    for want in EARLY {
        let got = next_control(link).await?;
        if got != want {
            return Err(format!("lansync's first message is {got:?}, want {want:?}"));
        }
    }
    b.peer("send", &[json!("page 1")], DEADLINE).await?;
    let got = next_control(link).await?;
    if got != "page 1" {
        return Err(format!("lansync got {got:?}, want \"page 1\""));
    }
    link.sender()
        .send_control("lansync 1")
        .await
        .map_err(|e| e.to_string())?;
    let inbox = page_inbox(b, 1).await?;
    if inbox != ["lansync 1"] {
        return Err(format!("the page got {inbox:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Setup both ways.

#[test]
fn lansync_offers_chromium_answers_active() {
    with_chromium(Place::Veth(0), |b, _| async move {
        for k in 0..3 {
            let started = Instant::now();
            let (mut link, connect) = lansync_offers(&b, false, false)
                .await
                .unwrap_or_else(|e| panic!("try {k}: {e}; {}", b.log_tail()));
            println!(
                "{}",
                json!({"test": "offer_active", "try": k, "setup_ms": ms(started.elapsed()),
                       "connect_ms": ms(connect)})
            );
            first_messages(&b, &mut link)
                .await
                .unwrap_or_else(|e| panic!("try {k}: {e}"));
            link.close().await;
        }
    });
}

/// PROTOCOL.md §7.1.3 allows an answer with `a=setup:passive`: the answering browser is then
/// the DTLS server and lansync, the offerer, the DTLS client.
#[test]
fn lansync_offers_chromium_answers_passive() {
    with_chromium(Place::Veth(0), |b, _| async move {
        let mut failures = Vec::new();
        for k in 0..PASSIVE_TRIES {
            let started = Instant::now();
            let tried = async {
                let (mut link, connect) = lansync_offers(&b, false, true).await?;
                let setup = started.elapsed();
                first_messages(&b, &mut link).await?;
                link.close().await;
                Ok::<_, String>((setup, connect))
            }
            .await;
            match tried {
                Ok((setup, connect)) => println!(
                    "{}",
                    json!({"test": "offer_passive", "try": k, "setup_ms": ms(setup),
                           "connect_ms": ms(connect)})
                ),
                Err(e) => {
                    println!("{}", json!({"test": "offer_passive", "try": k, "error": e}));
                    failures.push(format!("try {k}: {e}"));
                }
            }
        }
        println!(
            "{}",
            json!({"test": "offer_passive", "tries": PASSIVE_TRIES, "failed": failures.len()})
        );
        assert!(
            failures.is_empty(),
            "{} of {PASSIVE_TRIES} passive answers failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

#[test]
fn chromium_offers_lansync_answers() {
    with_chromium(Place::Veth(0), |b, _| async move {
        for k in 0..3 {
            let started = Instant::now();
            let (mut link, connect) = chromium_offers(&b, false, false)
                .await
                .unwrap_or_else(|e| panic!("try {k}: {e}; {}", b.log_tail()));
            println!(
                "{}",
                json!({"test": "chromium_offers", "try": k, "setup_ms": ms(started.elapsed()),
                       "connect_ms": ms(connect)})
            );
            // PROTOCOL.md §1: the answering side's first message is the marker, exactly.
            let first = page_inbox(&b, 1).await.expect("the ready marker");
            assert_eq!(first, [READY_MARKER], "try {k}");
            b.peer("send", &[json!("page 1")], DEADLINE)
                .await
                .expect("page sends");
            assert_eq!(next_control(&mut link).await.as_deref(), Ok("page 1"));
            link.sender().send_control("lansync 1").await.unwrap();
            let inbox = page_inbox(&b, 2).await.expect("lansync's message");
            assert_eq!(inbox, [READY_MARKER, "lansync 1"], "try {k}");
            link.close().await;
        }
    });
}

/// Setup across 5 % random loss each way: every handshake (ICE, DTLS, SCTP) must survive it, at
/// the latest on a second try (a session redials a link that did not open, PROTOCOL.md §6.4).
/// First tries that fail are printed: rarely (about 1 in 30 here) a link with Chromium does not
/// open under loss, and once in CI its retry did not either (Chromium then logged the abort of
/// the closed links only); the cause is not found yet, so the test is ignored until it is.
#[test]
#[ignore = "known bug: about 1 setup in 30 at 5 % loss does not open, and its retry can fail too \
            (seen in CI); run with --ignored to reproduce"]
fn setup_at_5_percent_loss() {
    with_chromium(Place::Veth(5), |b, _| async move {
        let mut failures = Vec::new();
        for k in 0..LOSSY_SETUPS {
            let mut errors = Vec::new();
            for attempt in 1..=2 {
                match lansync_offers(&b, false, false).await {
                    Ok((link, connect)) => {
                        let line = json!({"test": "setup_loss5", "try": k, "attempt": attempt,
                            "connect_ms": ms(connect)});
                        println!("{line}");
                        link.close().await;
                        break;
                    }
                    Err(e) => {
                        println!(
                            "{}",
                            json!({"test": "setup_loss5", "try": k, "attempt": attempt, "error": e})
                        );
                        errors.push(format!("{e}; {}", b.log_tail()));
                    }
                }
            }
            if errors.len() == 2 {
                failures.push(format!("try {k}: {}", errors.join(" | ")));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {LOSSY_SETUPS} setups at 5 % loss failed twice:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Browsers that hide their local addresses, as phones do.

/// Subnet of the bridged LAN of the hidden-address tests: lansync on `.1`, browsers after it.
const HIDDEN_SUBNET: &str = "10.231.8";
/// Browsers on that LAN, each in its own namespace.
const HIDDEN_BROWSERS: usize = 2;
/// Setups per browser across 5 % loss.
const HIDDEN_LOSSY_SETUPS: usize = 5;
/// Tries of one setup under loss: a follower redials a link that did not open (PROTOCOL.md §6.4).
const HIDDEN_TRIES: usize = 3;

/// An SDP's candidates must all be mDNS names (`<uuid>.local`): what a browser with its default
/// local-address hiding offers; at least one, so the test proves it met the hidden kind.
fn check_hidden(sdp: &str) -> Result<(), String> {
    let candidates: Vec<&str> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    let hidden = |l: &&str| {
        l.split_whitespace()
            .nth(4)
            .is_some_and(|a| a.ends_with(".local"))
    };
    if candidates.is_empty() || !candidates.iter().all(hidden) {
        return Err(format!("not only mDNS candidates:\n{sdp}"));
    }
    Ok(())
}

/// Runs `body` in lansync's namespace on a bridged LAN where each of [`HIDDEN_BROWSERS`]
/// namespaces holds a Chromium with local-address hiding on (Chromium's default), each losing
/// `loss` % of its UDP.
fn with_hidden_browsers<F>(loss: u32, body: impl FnOnce(Vec<Browser>) -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let Some(env) = Env::get(loss > 0) else {
        return;
    };
    let lan = Lan::with_default_route("wtch", HIDDEN_SUBNET, 1 + HIDDEN_BROWSERS)
        .expect("build the LAN of namespaces");
    let spaces: Vec<String> = (1..=HIDDEN_BROWSERS)
        .map(|i| lan.ns(i).to_owned())
        .collect();
    for i in 1..=HIDDEN_BROWSERS {
        lan.set_loss(i, loss).expect("set the loss");
    }
    let chromium = env.chromium.clone();
    in_netns(lan.ns(0), move || async move {
        let mut browsers = Vec::new();
        for ns in &spaces {
            let b = Browser::launch(&chromium, ns, Addresses::Hidden).await;
            b.eval(PEER_JS, DEADLINE).await.expect("load the peer");
            browsers.push(b);
        }
        body(browsers).await;
    });
}

/// `count` control messages each way on an open link whose page offered (`tag` names them).
async fn exchange(b: &Browser, link: &mut Link, tag: &str, count: usize) -> Result<(), String> {
    let first = page_inbox(b, 1).await?;
    if first != [READY_MARKER] {
        return Err(format!("the page's first message is {first:?}"));
    }
    let mut want = vec![READY_MARKER.to_owned()];
    for i in 0..count {
        let text = format!("{tag} page {i}");
        b.peer("send", &[json!(text)], DEADLINE).await?;
        let l = format!("{tag} lansync {i}");
        link.sender()
            .send_control(&l)
            .await
            .map_err(|e| e.to_string())?;
        want.push(l);
    }
    for i in 0..count {
        let got = next_control(link).await?;
        if got != format!("{tag} page {i}") {
            return Err(format!("lansync got {got:?} as message {i}"));
        }
    }
    let got = page_inbox(b, want.len()).await?;
    if got != want {
        return Err(format!("the page got {got:?}"));
    }
    Ok(())
}

/// A phone's browser offers with only `.local` candidates; lansync, answering (a choir master,
/// PROTOCOL.md §9), cannot resolve them, so the link rests on the browser's checks reaching
/// lansync's host candidate and lansync answering the peer-reflexive address they come from.
/// Two browsers on one bridged LAN, each linked three times, both links up at once.
#[test]
fn browsers_hiding_their_addresses_offer_and_lansync_answers() {
    with_hidden_browsers(0, |browsers| async move {
        for k in 0..3 {
            let mut links = Vec::new();
            for (n, b) in browsers.iter().enumerate() {
                let started = Instant::now();
                let (link, connect) = chromium_offers(b, false, true)
                    .await
                    .unwrap_or_else(|e| panic!("browser {n} try {k}: {e}; {}", b.log_tail()));
                println!(
                    "{}",
                    json!({"test": "hidden_offers", "browser": n, "try": k,
                           "setup_ms": ms(started.elapsed()), "connect_ms": ms(connect)})
                );
                links.push(link);
            }
            for (n, (b, link)) in browsers.iter().zip(&mut links).enumerate() {
                exchange(b, link, &format!("b{n}"), 10)
                    .await
                    .unwrap_or_else(|e| panic!("browser {n} try {k}: {e}"));
            }
            for link in links {
                link.close().await;
            }
        }
    });
}

/// The same across 5 % random loss each way on each browser's host: every setup must open
/// within [`HIDDEN_TRIES`] tries and carry 20 messages each way.
#[test]
fn browsers_hiding_their_addresses_link_across_5_percent_loss() {
    with_hidden_browsers(5, |browsers| async move {
        for k in 0..HIDDEN_LOSSY_SETUPS {
            for (n, b) in browsers.iter().enumerate() {
                let mut errors = Vec::new();
                let mut link = loop {
                    let started = Instant::now();
                    match chromium_offers(b, false, true).await {
                        Ok((link, connect)) => {
                            println!(
                                "{}",
                                json!({"test": "hidden_offers_loss5", "browser": n, "try": k,
                                       "attempt": errors.len() + 1,
                                       "setup_ms": ms(started.elapsed()),
                                       "connect_ms": ms(connect)})
                            );
                            break link;
                        }
                        Err(e) => {
                            println!(
                                "{}",
                                json!({"test": "hidden_offers_loss5", "browser": n, "try": k,
                                       "attempt": errors.len() + 1, "error": e})
                            );
                            errors.push(format!("{e}; {}", b.log_tail()));
                            assert!(
                                errors.len() < HIDDEN_TRIES,
                                "browser {n} try {k}: no link in {HIDDEN_TRIES} tries:\n{}",
                                errors.join("\n")
                            );
                        }
                    }
                };
                exchange(b, &mut link, &format!("b{n}"), 20)
                    .await
                    .unwrap_or_else(|e| panic!("browser {n} try {k}: {e}"));
                link.close().await;
            }
        }
    });
}

/// lansync offers (as a solo device would) and a browser hiding its addresses answers: lansync,
/// controlling ICE, must nominate the peer-reflexive pair the browser's checks revealed.
#[test]
fn lansync_offers_and_a_browser_hiding_its_addresses_answers() {
    with_hidden_browsers(0, |browsers| async move {
        let b = &browsers[0];
        for k in 0..3 {
            let (mut link, connect) = lansync_offers(b, false, false)
                .await
                .unwrap_or_else(|e| panic!("try {k}: {e}; {}", b.log_tail()));
            println!(
                "{}",
                json!({"test": "hidden_answers", "try": k, "connect_ms": ms(connect)})
            );
            first_messages(b, &mut link)
                .await
                .unwrap_or_else(|e| panic!("try {k}: {e}"));
            link.close().await;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Control messages.

#[test]
fn control_messages_both_ways_up_to_the_limit() {
    with_chromium(Place::Veth(0), |b, _| async move {
        let (mut link, _) = lansync_offers(&b, false, false)
            .await
            .unwrap_or_else(|e| panic!("{e}; {}", b.log_tail()));
        for want in EARLY {
            assert_eq!(next_control(&mut link).await.as_deref(), Ok(want));
        }
        let sender = link.sender();
        let big_l = "lansync big".to_string() + &"x".repeat(MAX_CONTROL_MESSAGE - 11);
        let mut want_page = Vec::new();
        for i in 0..100 {
            let text = format!("l{i}");
            sender.send_control(&text).await.unwrap();
            want_page.push(text);
        }
        sender.send_control(&big_l).await.unwrap();
        want_page.push(summary(&big_l));
        sender.send_control("l after big").await.unwrap();
        want_page.push("l after big".into());

        for i in 0..100 {
            b.peer("send", &[json!(format!("c{i}"))], DEADLINE)
                .await
                .unwrap();
        }
        b.peer(
            "sendBig",
            &[json!("chromium big"), json!(MAX_CONTROL_MESSAGE)],
            DEADLINE,
        )
        .await
        .expect("the page sends the largest control message");
        b.peer("send", &[json!("c after big")], DEADLINE)
            .await
            .unwrap();
        // lansync's description says a=max-message-size:65536 (PROTOCOL.md §1): Chromium must
        // refuse a larger message itself.
        let over = b
            .peer(
                "sendBig",
                &[json!("too big"), json!(MAX_CONTROL_MESSAGE + 1)],
                DEADLINE,
            )
            .await;
        assert!(
            over.is_err(),
            "Chromium sent a message over lansync's limit"
        );

        for i in 0..100 {
            assert_eq!(next_control(&mut link).await, Ok(format!("c{i}")));
        }
        let big_c = next_control(&mut link).await.expect("the big message");
        assert_eq!(big_c.len(), MAX_CONTROL_MESSAGE);
        assert!(big_c.starts_with("chromium big") && big_c[12..].bytes().all(|c| c == b'x'));
        assert_eq!(next_control(&mut link).await.as_deref(), Ok("c after big"));

        let got = page_inbox(&b, want_page.len()).await.expect("page inbox");
        assert_eq!(got, want_page);
        link.close().await;
    });
}

/// PROTOCOL.md §1: the marker is consumed by the transport; later copies are ignored.
#[test]
fn later_ready_markers_are_not_delivered() {
    with_chromium(Place::Veth(0), |b, _| async move {
        let (mut link, _) = lansync_offers(&b, false, false)
            .await
            .unwrap_or_else(|e| panic!("{e}; {}", b.log_tail()));
        for want in EARLY {
            assert_eq!(next_control(&mut link).await.as_deref(), Ok(want));
        }
        for text in [READY_MARKER, "after the copy"] {
            b.peer("send", &[json!(text)], DEADLINE).await.unwrap();
        }
        assert_eq!(
            next_control(&mut link).await.as_deref(),
            Ok("after the copy"),
            "a second ready marker reached the application"
        );
        link.close().await;
    });
}

// ---------------------------------------------------------------------------------------------
// A 20 MB stream lansync → Chromium.

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Message `i` of the stream: `i` (u32, little endian), then bytes `(i * 31 + j) & 0xff`.
fn stream_message(i: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..MAX_BINARY_MESSAGE)
        .map(|j| (i.wrapping_mul(31).wrapping_add(j) & 0xff) as u8)
        .collect();
    m[..4].copy_from_slice(&(i as u32).to_le_bytes());
    m
}

/// Sends the stream from lansync, lets the page check it; prints and returns the page's figures.
/// `namespaces`: where lansync and Chromium run, for their UDP receive-buffer drops.
async fn stream(
    b: &Browser,
    loopback: bool,
    label: &str,
    cap: Duration,
    namespaces: [&str; 2],
) -> Value {
    // Setup has its own tests (`setup_at_5_percent_loss`); here a failed one is said and retried,
    // so the stream's figures are always measured.
    let mut tries = 0;
    let (mut link, connect) = loop {
        tries += 1;
        match lansync_offers(b, loopback, false).await {
            Ok(opened) => break opened,
            Err(e) if tries < 3 => {
                println!("{}", json!({"test": label, "setup_try": tries, "error": e}));
            }
            Err(e) => panic!("{e}; {}", b.log_tail()),
        }
    };
    let sender = link.sender();
    let page_start = b.peer("now", &[], DEADLINE).await.expect("page clock");
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        for i in 0..STREAM_MESSAGES {
            if sender.send_binary(&stream_message(i)).await.is_err() {
                return i;
            }
        }
        STREAM_MESSAGES
    });
    // Keep reading lansync's events (acknowledgements need no reader, but a stuck queue would).
    let drain = tokio::spawn(async move { while link.recv().await.is_some() {} });
    let stats = b
        .peer(
            "binary",
            &[json!(STREAM_MESSAGES), json!(cap.as_millis() as u64)],
            cap + DEADLINE,
        )
        .await
        .expect("the page's figures");
    let wall = started.elapsed();
    sending.abort();
    drain.abort();
    let bytes = stats["bytes"].as_f64().unwrap_or(0.0);
    let last = stats["first_at"].as_f64().unwrap_or(0.0) + stats["span_ms"].as_f64().unwrap_or(0.0);
    let total_ms = last - page_start.as_f64().unwrap_or(0.0);
    let mut line = json!({
        "test": label,
        "messages": stats["count"],
        "bytes": bytes,
        "total_ms": (total_ms * 100.0).round() / 100.0,
        "throughput_mb_s": if total_ms > 0.0 { (bytes / total_ms / 1e3 * 100.0).round() / 100.0 } else { 0.0 },
        "max_gap_ms": stats["max_gap_ms"],
        "max_gap_at_message": stats["max_gap_at"],
        "gaps_over_200ms": stats["gaps_over_200ms"],
        "wall_ms": ms(wall),
        "connect_ms": ms(connect),
    });
    let drops: Vec<Option<u64>> = if namespaces[0] == namespaces[1] {
        vec![udp_rcvbuf_errors(namespaces[0])]
    } else {
        namespaces.iter().map(|ns| udp_rcvbuf_errors(ns)).collect()
    };
    line["udp_rcvbuf_errors"] = json!(drops);
    if let Some(e) = stats.get("error") {
        line["error"] = e.clone();
    }
    println!("{line}");
    stats
}

/// The stream the other way: the page sends, lansync checks order and content and times arrivals.
/// Prints the figures and returns (messages in order and intact, messages received).
async fn stream_from_chromium(b: &Browser, label: &str, cap: Duration) -> (usize, usize) {
    let mut tries = 0;
    let (mut link, connect) = loop {
        tries += 1;
        match lansync_offers(b, false, false).await {
            Ok(opened) => break opened,
            Err(e) if tries < 3 => {
                println!("{}", json!({"test": label, "setup_try": tries, "error": e}));
            }
            Err(e) => panic!("{e}; {}", b.log_tail()),
        }
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + cap;
    let args = [
        json!(STREAM_MESSAGES),
        json!(MAX_BINARY_MESSAGE),
        json!(cap.as_millis() as u64),
    ];
    let sending = b.peer("sendStream", &args, cap + DEADLINE);
    let receiving = async {
        let (mut good, mut count) = (0usize, 0usize);
        let mut times = Vec::with_capacity(STREAM_MESSAGES);
        while count < STREAM_MESSAGES {
            match tokio::time::timeout_at(deadline, link.recv()).await {
                Ok(Some(LinkEvent::Binary(m))) => {
                    good += usize::from(m[..] == stream_message(count)[..]);
                    count += 1;
                    times.push(Instant::now());
                }
                Ok(Some(LinkEvent::Closed)) | Ok(None) | Err(_) => break,
                Ok(Some(_)) => {} // the page's early messages, connectivity blips
            }
        }
        (good, count, times)
    };
    let (sent, (good, count, times)) = tokio::join!(sending, receiving);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let (at, max_gap) = gaps
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|&(_, g)| g)
        .unwrap_or_default();
    let total = times.last().map_or(Duration::ZERO, |t| *t - started);
    let bytes = count * MAX_BINARY_MESSAGE;
    let mut line = json!({
        "test": label,
        "messages": count,
        "bytes": bytes,
        "total_ms": ms(total),
        "throughput_mb_s": if total.is_zero() { 0.0 } else {
            (bytes as f64 / total.as_secs_f64() / 1e6 * 100.0).round() / 100.0
        },
        "max_gap_ms": ms(max_gap),
        "max_gap_at_message": at + 1,
        "gaps_over_200ms": gaps.iter().filter(|g| **g > Duration::from_millis(200)).count(),
        "connect_ms": ms(connect),
    });
    if let Err(e) = sent {
        line["error"] = json!(e);
    }
    println!("{line}");
    (good, count)
}

fn assert_whole(stats: &Value, b: &Browser) {
    assert_eq!(
        stats["count"].as_u64(),
        Some(STREAM_MESSAGES as u64),
        "not every message arrived: {stats}; {}",
        b.log_tail()
    );
    assert_eq!(
        stats["bytes"].as_u64(),
        Some((STREAM_MESSAGES * MAX_BINARY_MESSAGE) as u64)
    );
    assert_eq!(
        stats["bad"].as_u64(),
        Some(0),
        "out of order or damaged: {stats}"
    );
}

/// lansync with `loopback_only` (one SCTP packet per 16 KiB message) and a browser on the same
/// machine: every record must be one Chromium accepts.
/// Where Chromium runs in a stream test, and the loss on its namespace.
#[derive(Clone, Copy)]
enum Place {
    /// Beside lansync, on loopback (lansync uses its loopback settings).
    Loopback,
    /// Across the veth, `u32` % of UDP dropped each way.
    Veth(u32),
}

/// A 20 MB stream one way (`to_chromium`, or from it) with Chromium placed as `place`; every
/// message must arrive whole and in order within `cap_s` seconds; figures go to stdout.
fn stream_test(to_chromium: bool, place: Place, label: &'static str, cap_s: u64) {
    let loopback = matches!(place, Place::Loopback);
    with_chromium(place, move |b, [l, ns]| async move {
        let cap = Duration::from_secs(cap_s);
        if to_chromium {
            let stats = stream(&b, loopback, label, cap, [&l, &ns]).await;
            assert_whole(&stats, &b);
        } else {
            let (good, count) = stream_from_chromium(&b, label, cap).await;
            assert_eq!(count, STREAM_MESSAGES, "not every message arrived");
            assert_eq!(good, STREAM_MESSAGES, "out of order or damaged");
        }
    });
}

#[test]
fn stream_to_chromium_over_loopback() {
    stream_test(true, Place::Loopback, "stream_loopback", 120);
}

#[test]
fn stream_to_chromium_over_veth() {
    stream_test(true, Place::Veth(0), "stream_veth", 120);
}

#[test]
fn stream_to_chromium_over_veth_at_5_percent_loss() {
    stream_test(true, Place::Veth(5), "stream_veth_loss5", 300);
}

#[test]
fn stream_from_chromium_over_veth() {
    stream_test(false, Place::Veth(0), "stream_from_chromium_veth", 120);
}

#[test]
fn stream_from_chromium_over_veth_at_5_percent_loss() {
    stream_test(false, Place::Veth(5), "stream_from_chromium_loss5", 300);
}
