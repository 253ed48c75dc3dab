//! Phones follow a choir master in their browsers: the follower page the master serves from its
//! join endpoint (PROTOCOL.md §9), in real headless Chromium with its local-address hiding left
//! on (mDNS candidates only, as on a phone), each browser in its own network namespace on one
//! bridged LAN with the master's (a real `lansync host --json` process) and a native follower's
//! (`lansync join --json`). The test waits on the page's hooks (`window.lansync.status()`,
//! `.events`, `.command()`, `.cut()`) with generous deadlines. A second test runs the phones
//! across 5 % random UDP loss.
//!
//! Needs root, iproute2, nftables and `chromium` (or `LANSYNC_CHROMIUM`); without them it says
//! why and passes, unless `CI` is set. Figures go to stdout, one JSON object per line:
//! `cargo test --release --test browser_followers -- --nocapture`. `LANSYNC_SCREENSHOT=FILE`
//! saves a phone's screen (PNG, 390×844 CSS pixels at 3×) there.
#![cfg(all(feature = "native", unix))]

mod browser;
mod cli;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use browser::lan::Lan;
use browser::page::{Phone, WAIT};
use browser::{Addresses, Browser, Env};
use cli::Proc;
use serde_json::{json, Value};

/// The LAN: the master on `.1`, phones on `.2`–`.4`, the native follower on `.5`.
const SUBNET: &str = "10.231.10";
/// The LAN of the lossy test, laid out the same.
const LOSSY_SUBNET: &str = "10.231.11";
const MASTER: usize = 0;
const PHONES: usize = 3;
const NATIVE: usize = PHONES + 1;
/// A phone's screen in CSS pixels.
const VIEWPORT: (u32, u32) = (390, 844);
/// Noticing a silent link takes the heartbeat's timeout (PROTOCOL.md §6.4), then a redial.
const SILENCE_WAIT: Duration = Duration::from_secs(150);
/// How long the real cut lasts: longer than the heartbeat's timeout, so the link is lost.
const CUT: Duration = Duration::from_secs(15);
/// Turns timed one by one (the latency figures), then turns sent in one burst.
const TURNS: u32 = 20;
const BURST: u32 = 10;
/// The song of the session pack: one picture per page, `magnificat-1.png`… (the page shows a
/// pack file named `<song>-<page>`).
const SONG: &str = "magnificat";
const SCORE_PAGES: u32 = 3;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-bf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// Writes the pack: [`SCORE_PAGES`] pictures of a score page (staves and note heads, grey on
/// white, A4-shaped); returns (name, size) of each.
fn make_pack(dir: &Path) -> Vec<(String, u64)> {
    let (w, h) = (800u32, 1130u32);
    (1..=SCORE_PAGES)
        .map(|page| {
            let mut px = vec![255u8; (w * h) as usize];
            for staff in 0..9u32 {
                let top = 110 + staff * 110;
                for line in 0..5 {
                    let y = top + line * 12;
                    px[(y * w + 60) as usize..(y * w + w - 60) as usize].fill(40);
                }
                for k in 0..14u32 {
                    // A note head where a simple hash of (page, staff, k) puts it.
                    let x = 90 + k * 46;
                    let step = (page * 7 + staff * 5 + k * 3) % 9;
                    let cy = top + 48 - step * 6;
                    for dy in 0..11u32 {
                        for dx in 0..15u32 {
                            let (ex, ey) = (dx as f32 - 7.0, dy as f32 - 5.0);
                            if ex * ex / 49.0 + ey * ey / 25.0 <= 1.0 {
                                px[((cy + dy - 5) * w + x + dx) as usize] = 20;
                            }
                        }
                    }
                }
            }
            let name = format!("{SONG}-{page}.png");
            let path = dir.join(&name);
            let file = std::io::BufWriter::new(std::fs::File::create(&path).expect("pack file"));
            let mut encoder = png::Encoder::new(file, w, h);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().expect("png header");
            writer.write_image_data(&px).expect("png data");
            writer.finish().expect("png end");
            let size = std::fs::metadata(&path).expect("pack file").len();
            (name, size)
        })
        .collect()
}

/// `lansync ARGS` inside namespace `ns`.
fn lansync_in(name: &'static str, ns: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_lansync")])
        .args(args);
    Proc::spawn_command(name, cmd)
}

/// The phones' URL (`http://ADDR:PORT/#h=…&c=…&t=…&f=…`): the host's `page`, or made from its
/// join link (the fragment is the link's query, PROTOCOL.md §9.5).
fn page_url(hosting: &Value) -> String {
    if let Some(page) = hosting["page"].as_str() {
        return page.to_owned();
    }
    let link = hosting["link"].as_str().expect("a join link");
    let query = link.split_once('?').expect("a query").1;
    let h = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("h="))
        .expect("h in the link");
    format!("http://{h}/#{query}")
}

/// Saves the phone's screen to `LANSYNC_SCREENSHOT`, if set (README's picture, docs/phone.png).
async fn screenshot(p: &Phone) {
    if let Some(path) = std::env::var_os("LANSYNC_SCREENSHOT") {
        let png = p.b.screenshot().await.expect("screenshot");
        std::fs::write(&path, png).expect("write the screenshot");
    }
}

fn ms(d: Duration) -> f64 {
    round2(d.as_secs_f64() * 1e3)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `q` quantile (0–1) of `v`, nearest rank.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    round2(v[i])
}

/// A session on the LAN: the host process (publishing the pack), a native follower joined, and
/// the phones' URL. Namespaces and processes go with it.
struct Choir {
    host: Proc,
    native: Proc,
    url: String,
    files: Vec<(String, u64)>,
    lan: Lan,
    env: Env,
    label: &'static str,
    /// This session's first phone is README's picture (see [`screenshot`]).
    screenshot: bool,
    _dirs: Dirs,
}

impl Choir {
    /// The session on a fresh LAN on `subnet`, each phone's host losing `loss` % of its UDP;
    /// `None` (said) when the test cannot run here.
    fn start(label: &'static str, subnet: &str, loss: u32) -> Option<Choir> {
        let env = Env::get(true)?;
        let lan = Lan::with_default_route("wtbf", subnet, NATIVE + 1)
            .expect("build the LAN of namespaces");
        for n in 0..PHONES {
            lan.set_loss(1 + n, loss).expect("set the loss");
        }
        let dirs = Dirs(
            ["pack", "host", "native"]
                .map(|d| temp_dir(&format!("{label}-{d}")))
                .to_vec(),
        );
        let files = make_pack(&dirs.0[0]);
        let [pack, hd, nd] = [0, 1, 2].map(|i| dirs.0[i].display().to_string());
        let host_args = [
            "host",
            "--json",
            "--no-mdns",
            "--state-dir",
            &hd,
            "--name",
            "Master",
            "--pack",
            &pack,
        ];
        let host = lansync_in("host", lan.ns(MASTER), &host_args);
        let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
        let url = page_url(&hosting);
        let origin = format!("http://{}:", lan.addr(MASTER));
        assert!(url.starts_with(&origin), "{url}");
        let link = hosting["link"].as_str().unwrap().to_owned();
        let native_args = [
            "join",
            &link,
            "--json",
            "--state-dir",
            &nd,
            "--name",
            "Tenor",
        ];
        let native = lansync_in("native", lan.ns(NATIVE), &native_args);
        native.wait_for("joined", |v| v["event"] == "joined");
        Some(Choir {
            host,
            native,
            url,
            files,
            lan,
            env,
            label,
            screenshot: loss == 0,
            _dirs: dirs,
        })
    }

    /// Every phone opens the page at once, as a choir scanning the QR code would; returns once
    /// each shows its first page and the host counts everyone.
    async fn open_phones(&self) -> Vec<Phone> {
        let mut phones = Vec::new();
        for n in 0..PHONES {
            let b =
                Browser::launch(&self.env.chromium, self.lan.ns(1 + n), Addresses::Hidden).await;
            b.phone_viewport(VIEWPORT.0, VIEWPORT.1)
                .await
                .expect("viewport");
            phones.push(Phone { b, n });
        }
        for p in &phones {
            p.b.navigate(&self.url).await.expect("open the page");
        }
        for p in &phones {
            let shown = "s.phase === 'following' && s.shown_ms !== null";
            let s = p.wait("the first page shown", shown, WAIT).await;
            let figure = |k: &str| round2(s[k].as_f64().unwrap_or(f64::NAN));
            println!(
                "{}",
                json!({"test": self.label, "phone": p.n, "joined_ms": figure("joined_ms"),
                       "open_to_first_page_ms": figure("shown_ms"),
                       "role_state": s["role_state"]})
            );
            assert_eq!(s["leader"], "Master", "{s}");
        }
        self.host.wait_for("everyone present", |v| {
            v["event"] == "presence" && v["count"] == (PHONES + 2) as u64
        });
        phones
    }

    /// The pack reaches every follower, verified (PROTOCOL.md §11).
    async fn wait_pack(&self, phones: &[Phone]) {
        let verified = format!(
            "s.files.length === {} && s.files.every((f) => f.verified)",
            self.files.len()
        );
        for p in phones {
            let s = p.wait("the pack verified", &verified, WAIT).await;
            for (name, size) in &self.files {
                let f = s["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["name"] == *name);
                let f = f.unwrap_or_else(|| panic!("phone {}: no {name}: {s}", p.n));
                assert_eq!(f["size"], *size, "phone {}: {f}", p.n);
            }
        }
        self.native.wait_for("the pack verified", |v| {
            v["event"] == "files_done" && v["kind"] == "pack"
        });
    }

    /// A song change, then [`TURNS`] turns one at a time, each timed on every phone from the
    /// host's command to the page's event; then [`BURST`] turns at once, of which only the last
    /// must be where everyone ends. Prints the figures.
    async fn turns(&mut self, phones: &[Phone]) {
        self.host.send(json!({"cmd": "set_song", "song_id": SONG}));
        for p in phones {
            let song = format!("s.song_id === '{SONG}'");
            p.wait("the new song", &song, WAIT).await;
        }
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); PHONES];
        for page in 1..=TURNS {
            let mut clocks = Vec::new();
            for p in phones {
                clocks.push(p.clock().await);
            }
            let sent = Instant::now();
            self.host.send(json!({"cmd": "set_page", "page": page}));
            for (p, (at, page_ms)) in phones.iter().zip(&clocks) {
                p.wait_page(page).await;
                let t = p.page_event_at(page).await.expect("the page event");
                let since_sync = ms(sent.saturating_duration_since(*at));
                latencies[p.n].push(t - page_ms - since_sync);
            }
            self.native.wait_page(u64::from(page));
            if page == 1 && self.screenshot {
                screenshot(&phones[0]).await;
            }
        }
        let all: Vec<f64> = latencies.iter().flatten().copied().collect();
        let medians: Vec<f64> = latencies.iter().map(|l| quantile(l.clone(), 0.5)).collect();
        println!(
            "{}",
            json!({"test": self.label, "turns": TURNS, "phones": PHONES,
                   "turn_latency_median_ms": quantile(all.clone(), 0.5),
                   "turn_latency_p90_ms": quantile(all.clone(), 0.9),
                   "turn_latency_max_ms": quantile(all, 1.0),
                   "per_phone_median_ms": medians,
                   "clock": "each page's performance.now() of its page event, related to the \
                             test's clock by a Runtime.evaluate bracketed before each turn"})
        );
        let last = 100 + BURST;
        let started = Instant::now();
        for page in 101..=last {
            self.host.send(json!({"cmd": "set_page", "page": page}));
        }
        for p in phones {
            p.wait_page(last).await;
        }
        self.native.wait_page(u64::from(last));
        println!(
            "{}",
            json!({"test": self.label, "burst": BURST, "burst_to_all_ms": ms(started.elapsed())})
        );
    }

    /// The end reaches every phone and the native follower.
    async fn end(&mut self, phones: &[Phone]) {
        self.host.send(json!({"cmd": "end"}));
        for p in phones {
            p.wait("the session's end", "s.phase === 'ended'", WAIT)
                .await;
        }
        self.native
            .wait_for("session end", |v| v["event"] == "session_ended");
    }
}

/// Directories removed on drop (declared last in [`Choir`], so after its processes are gone).
struct Dirs(Vec<PathBuf>);

impl Drop for Dirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn phones_follow_the_master_in_their_browsers() {
    let Some(mut choir) = Choir::start("browser_followers", SUBNET, 0) else {
        return;
    };
    runtime().block_on(async {
        let phones = choir.open_phones().await;
        choir.wait_pack(&phones).await;
        choir.turns(&phones).await;
        let (host, native, lan) = (&mut choir.host, &choir.native, &choir.lan);

        // One phone goes free, reads ahead on its own, and follows again.
        let free = &phones[0];
        free.command(json!({"cmd": "free"})).await;
        free.wait("free mode", "s.phase === 'free' && !s.follow", WAIT)
            .await;
        free.command(json!({"cmd": "set_page", "page": 3})).await;
        free.wait("its own page", "s.page === 3 && !s.follow", WAIT)
            .await;
        host.send(json!({"cmd": "set_page", "page": 120}));
        for p in &phones[1..] {
            p.wait_page(120).await;
        }
        native.wait_page(120);
        let s = free.status().await;
        assert_eq!(
            (s["page"].as_u64(), &s["follow"]),
            (Some(3), &json!(false)),
            "{s}"
        );
        free.command(json!({"cmd": "follow"})).await;
        free.wait_page(120).await;

        // A lost link (the page's own cut): the phone rejoins and follows.
        let cut = &phones[1];
        let joins = cut.count("joined").await;
        cut.b.eval("lansync.cut()", WAIT).await.expect("cut");
        cut.wait("a rejoin", "s.phase === 'following'", WAIT).await;
        let rejoined =
            format!("lansync.events.filter((e) => e.event.event === 'joined').length > {joins}");
        cut.b
            .wait_until("phone 1: joined again", &rejoined, WAIT)
            .await;
        host.send(json!({"cmd": "set_page", "page": 121}));
        for p in &phones {
            p.wait_page(121).await;
        }

        // A real cut, longer than the heartbeat's timeout: every packet between the phone and
        // the master dropped, then let through again.
        let started = Instant::now();
        lan.cut(1 + cut.n, MASTER, true).expect("cut the phone off");
        cut.wait(
            "the loss noticed",
            "s.phase === 'reconnecting'",
            SILENCE_WAIT,
        )
        .await;
        let noticed = started.elapsed();
        host.send(json!({"cmd": "set_page", "page": 122}));
        let cut_left = CUT.saturating_sub(started.elapsed());
        tokio::time::sleep(cut_left).await; // the outage itself, not a synchronisation
        lan.cut(1 + cut.n, MASTER, false)
            .expect("restore the phone");
        let restored = Instant::now();
        cut.wait_page(122).await;
        println!(
            "{}",
            json!({"test": "browser_followers", "cut_noticed_ms": ms(noticed),
                   "back_in_step_after_restore_ms": ms(restored.elapsed())})
        );

        // A reload: the same device rejoins as the member it was (PROTOCOL.md §9.2), from what
        // the page kept in the browser. `wtOld` marks the old document, gone once reloaded.
        let reload = &phones[2];
        let before = reload.status().await;
        reload
            .b
            .eval("window.wtOld = true", WAIT)
            .await
            .expect("mark");
        reload.b.reload().await.expect("reload");
        let s = reload
            .wait(
                "a rejoin after reload",
                "!window.wtOld && s.phase === 'following' && s.page === 122",
                WAIT,
            )
            .await;
        assert_eq!(
            s["device_id"], before["device_id"],
            "a new device after reload"
        );
        let joined = reload
            .b
            .eval(
                "lansync.events.filter((e) => e.event.event === 'joined').map((e) => e.event)",
                WAIT,
            )
            .await
            .expect("joined events");
        assert_eq!(joined[0]["rejoin"], true, "not a member's rejoin: {joined}");
        host.send(json!({"cmd": "set_page", "page": 123}));
        for p in &phones {
            p.wait_page(123).await;
        }
        native.wait_page(123);
        let s = reload.status().await;
        assert_eq!(
            s["presence"],
            json!(PHONES + 2),
            "a reload counted twice: {s}"
        );

        choir.end(&phones).await;
    });
}

/// The same phones across 5 % random loss of their UDP each way (nftables, on each phone's
/// host): joins, the pack, the song and the turns still reach everyone.
#[test]
fn phones_follow_across_5_percent_loss() {
    let Some(mut choir) = Choir::start("browser_followers_loss5", LOSSY_SUBNET, 5) else {
        return;
    };
    runtime().block_on(async {
        let phones = choir.open_phones().await;
        choir.wait_pack(&phones).await;
        choir.turns(&phones).await;
        let dropped: Vec<u64> = (0..PHONES).map(|n| choir.lan.dropped(1 + n)).collect();
        println!(
            "{}",
            json!({"test": choir.label, "udp_packets_dropped": dropped})
        );
        assert!(
            dropped.iter().all(|&d| d > 0),
            "no loss applied: {dropped:?}"
        );
        choir.end(&phones).await;
    });
}
