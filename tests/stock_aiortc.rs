//! A stock WebRTC peer against lansync: `tests/stock/aiortc_peer.py`, written on aiortc (default
//! settings) from PROTOCOL.md alone, pairs with `lansync pair offer` from its invite code, joins
//! `lansync host` by its QR link or its session code (SPAKE2), follows its page turns and
//! downloads its session pack, verified byte for byte. Both run as separate processes; every
//! wait is for an event, with a generous deadline.
//!
//! aiortc (and python-spake2, for code joins) come from `.ci/venv` (made by `.ci/run`), or the
//! interpreter in `STOCK_PYTHON`. When they are missing the tests fail under CI (`CI` set) and
//! skip, saying so, otherwise. The namespace variants (a 1500-MTU veth, one with 5 % random
//! loss by nftables) need root, iproute2 and nftables, and skip, saying why, without them.
#![cfg(all(feature = "native", unix))]

mod cli;
// Namespace plumbing shared with the benchmarks (`run`, `ip`, `set_loss`).
#[path = "../benches/common/mod.rs"]
mod netns;

use cli::Proc;
use netns::ip;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Longest wait for a step on a clean path (joins and turns take milliseconds).
const STEP: Duration = Duration::from_secs(30);
/// Longest wait for the pack on a clean path (6 MB).
const PACK: Duration = Duration::from_secs(60);
/// Longest wait for a step behind 5 % loss (a lost packet can cost seconds today).
const LOSSY_STEP: Duration = Duration::from_secs(60);
/// Longest wait for the pack behind 5 % loss.
const LOSSY_PACK: Duration = Duration::from_secs(300);

// ------------------------------------------------------------------------- the Python peer

/// The interpreter with aiortc, or why there is none.
fn python() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python");
    let python = match std::env::var_os("STOCK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None if venv.exists() => venv,
        None => PathBuf::from("python3"),
    };
    let out = Command::new(&python)
        .args(["-c", "import aiortc, spake2"])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import aiortc and spake2 (run .ci/run, or `python3 -m venv .ci/venv && \
             .ci/venv/bin/pip install aiortc spake2`): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(python)
}

/// The interpreter, or `None` to skip: only outside CI may a missing aiortc skip a test.
fn python_or_skip(test: &str) -> Option<PathBuf> {
    match python() {
        Ok(p) => Some(p),
        Err(why) if std::env::var_os("CI").is_some() => panic!("{test}: {why}"),
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}

/// A running process speaking JSON lines (the Python peer, or lansync inside a namespace).
struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    name: &'static str,
    /// Links the peer lost and dialled again (`link` `reconnecting` events seen so far).
    rejoins: Cell<usize>,
    /// Every `link` state seen so far, in order.
    link_states: RefCell<Vec<String>>,
}

impl Peer {
    fn spawn(name: &'static str, program: &Path, args: &[&str]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: start {}: {e}", program.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| json!({"event": "not-json", "line": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines,
            name,
            rejoins: Cell::new(0),
            link_states: RefCell::new(Vec::new()),
        }
    }

    fn send(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The first event matching `pred` within `limit`; an `error` or a refusal on the way fails.
    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let got = self.lines.recv_timeout(left);
            if let Ok(v) = &got {
                if v["event"] == "link" {
                    let state = v["state"].as_str().unwrap_or("?").to_string();
                    if state == "reconnecting" {
                        self.rejoins.set(self.rejoins.get() + 1);
                    }
                    self.link_states.borrow_mut().push(state);
                }
            }
            match got {
                Ok(v) if pred(&v) => return v,
                Ok(v) => {
                    let bad = ["error", "rejected", "files_failed", "not-json"];
                    assert!(
                        !bad.iter().any(|b| v["event"] == *b),
                        "{}: unexpected {v} while waiting for {what}",
                        self.name
                    );
                }
                Err(_) => panic!("{}: no {what} within {limit:?}", self.name),
            }
        }
    }

    /// Sends `sig` (`-STOP`, `-CONT`) to the process.
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{}: kill {sig}", self.name);
    }

    fn wait_page(&self, page: u64, limit: Duration) {
        self.wait_for(&format!("page {page}"), limit, |v| {
            v["event"] == "page" && v["page"] == page
        });
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stock/aiortc_peer.py")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-stock-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ------------------------------------------------------------------------------ the pack

/// A small PRNG (xorshift) so the pack's bytes differ per run without a dependency.
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A pack of four files (PROTOCOL.md §11.2 types): a 6 MB score, an image, two MusicXML parts.
fn make_pack(dir: &Path) -> Vec<PathBuf> {
    let seed = std::process::id() as u64 | 1;
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend(noise(6_000_000 + 12_345, seed));
    let mut png = vec![0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
    png.extend(noise(40_000, seed.rotate_left(17)));
    let xml = b"<?xml version=\"1.0\"?>\n<score-partwise version=\"4.0\"/>\n".to_vec();
    let files = [
        ("Ave Maria.pdf", pdf),
        ("cover.png", png),
        ("alto part.musicxml", xml.clone()),
        // Non-ASCII: the pack hash is over the names' raw UTF-8 (canonical JSON, PROTOCOL.md §11.1).
        ("Ständchen – Schubert.musicxml", xml),
    ];
    files
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

/// Every file of the pack is in `download`, byte for byte.
fn assert_received(pack: &[PathBuf], download: &Path) {
    for file in pack {
        let got = download.join(file.file_name().unwrap());
        let want = std::fs::read(file).unwrap();
        let have = std::fs::read(&got).unwrap_or_else(|e| panic!("{}: {e}", got.display()));
        assert!(
            want == have,
            "{} differs from what the host published",
            got.display()
        );
    }
}

// ------------------------------------------------------------------------------ scenarios

#[test]
fn a_stock_aiortc_peer_pairs_from_codes_and_mirrors_pages_both_ways() {
    let Some(python) = python_or_skip("pairing") else {
        return;
    };
    let mut lansync = Proc::spawn(
        "lansync",
        &["pair", "offer", "--json", "--loopback", "--id", "tab-a"],
    );
    let invite = lansync.wait_for("invite code", |v| v["event"] == "invite");
    let script = peer_script();
    let mut aiortc = Peer::spawn(
        "aiortc",
        &python,
        &[
            s(&script),
            "pair-answer",
            invite["code"].as_str().unwrap(),
            "--loopback",
            "--id",
            "py-b",
        ],
    );
    let answer = aiortc.wait_for("answer code", STEP, |v| v["event"] == "answer");
    let code = answer["code"].as_str().unwrap();
    assert!(code.starts_with("LS:"), "{answer}");
    lansync.send(json!({"cmd": "answer", "code": code}));
    lansync.wait_for("link", |v| {
        v["event"] == "link" && v["state"] == "connected"
    });
    aiortc.wait_for("link", STEP, |v| {
        v["event"] == "link" && v["state"] == "connected"
    });
    aiortc.wait_for("lansync's HELLO", STEP, |v| {
        v["event"] == "hello" && v["mode"] == "solo" && v["peer"] == "tab-a"
    });

    // lansync turns; the stock peer follows. Then the other way, and again.
    lansync.send(json!({"cmd": "set_page", "page": 3}));
    aiortc.wait_page(3, STEP);
    aiortc.send(json!({"cmd": "set_page", "page": 5}));
    lansync.wait_for("page 5 from the stock peer", |v| {
        v["event"] == "page" && v["page"] == 5 && v["origin"] == "remote"
    });
    lansync.send(json!({"cmd": "set_page", "page": 8}));
    aiortc.wait_page(8, STEP);
    aiortc.send(json!({"cmd": "set_page", "page": 2}));
    lansync.wait_for("page 2 from the stock peer", |v| {
        v["event"] == "page" && v["page"] == 2 && v["origin"] == "remote"
    });
    // A change whose SET_PAGE never left: the stock peer's solo STATE_SNAPSHOT (every 5 s)
    // carries it, so lansync must accept the snapshot as the stock peer writes it.
    aiortc.send(json!({"cmd": "set_page", "page": 13, "send": false}));
    lansync.wait_for("page 13 from the stock peer's snapshot", |v| {
        v["event"] == "page" && v["page"] == 13 && v["origin"] == "remote"
    });
}

#[test]
fn a_stock_aiortc_peer_invites_and_lansync_answers() {
    let Some(python) = python_or_skip("pairing, aiortc offering") else {
        return;
    };
    let script = peer_script();
    let mut aiortc = Peer::spawn(
        "aiortc",
        &python,
        &[s(&script), "pair-offer", "--loopback", "--id", "py-a"],
    );
    let invite = aiortc.wait_for("invite code", STEP, |v| v["event"] == "invite");
    let mut lansync = Proc::spawn(
        "lansync",
        &[
            "pair",
            "answer",
            invite["code"].as_str().unwrap(),
            "--json",
            "--loopback",
            "--id",
            "tab-b",
        ],
    );
    let answer = lansync.wait_for("answer code", |v| v["event"] == "answer");
    aiortc.send(json!({"cmd": "answer", "code": answer["code"]}));
    aiortc.wait_for("link", STEP, |v| {
        v["event"] == "link" && v["state"] == "connected"
    });
    lansync.wait_for("link", |v| {
        v["event"] == "link" && v["state"] == "connected"
    });
    aiortc.send(json!({"cmd": "set_page", "page": 4}));
    lansync.wait_for("page 4 from the stock peer", |v| {
        v["event"] == "page" && v["page"] == 4 && v["origin"] == "remote"
    });
    lansync.send(json!({"cmd": "set_page", "page": 6}));
    aiortc.wait_page(6, STEP);
}

/// A follower on aiortc joins `host` (started by `host`) and gets turns and the pack.
struct Choir {
    host: Peer,
    /// When the follower was started.
    started: Instant,
    follower: Peer,
    pack: Vec<PathBuf>,
    download: PathBuf,
    /// Everything the choir wrote (pack, downloads, state): removed on drop.
    dir: PathBuf,
}

impl Drop for Choir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `lansync host` (through `wrap`, e.g. `ip netns exec NS`) with a pack, and the aiortc
/// follower (through `follower_wrap`) on its join link.
fn start_choir(
    name: &str,
    python: &Path,
    wrap: &[&str],
    host_args: &[&str],
    follower_wrap: &[&str],
    follower_args: &[&str],
) -> Choir {
    let dir = scratch(name);
    let (pack_dir, download) = (dir.join("pack"), dir.join("download"));
    std::fs::create_dir_all(&pack_dir).unwrap();
    let pack = make_pack(&pack_dir);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lansync"));
    let state = dir.join("host");
    let mut args: Vec<&str> = wrap.to_vec();
    args.extend([
        s(&bin),
        "host",
        "--json",
        "--state-dir",
        s(&state),
        "--pack",
        s(&pack_dir),
    ]);
    args.extend(host_args);
    let host = spawn_wrapped("host", &args);
    let hosting = host.wait_for("join link", STEP, |v| v["event"] == "hosting_link");
    let link = hosting["link"].as_str().unwrap().to_string();
    let script = peer_script();
    let mut args: Vec<&str> = follower_wrap.to_vec();
    args.extend([
        s(python),
        s(&script),
        "join",
        &link,
        "--id",
        "aiortc-alto",
        "--name",
        "Alto (aiortc)",
        "--download",
        s(&download),
    ]);
    args.extend(follower_args);
    let started = Instant::now();
    let follower = spawn_wrapped("aiortc follower", &args);
    Choir {
        host,
        started,
        follower,
        pack,
        download,
        dir,
    }
}

fn spawn_wrapped(name: &'static str, args: &[&str]) -> Peer {
    Peer::spawn(name, Path::new(args[0]), &args[1..])
}

/// Joins, follows a song and turns (during the pack's transfer and after it), and receives the
/// pack; `step` and `pack` bound each wait. Returns how often the follower had to rejoin, and
/// prints what it measured (JSON, on stderr).
fn follow_and_download(name: &str, choir: &mut Choir, step: Duration, pack: Duration) -> usize {
    let Choir { host, follower, .. } = choir;
    let joined = follower.wait_for("JOIN_ACCEPT", step, |v| v["event"] == "joined");
    assert_eq!(joined["rejoin"], false, "{joined}");
    let joined_ms = choir.started.elapsed().as_secs_f64() * 1e3;
    host.wait_for("the follower present", step, |v| {
        v["event"] == "presence" && v["count"] == 2
    });
    host.send(json!({"cmd": "set_song", "song_id": "ave-maria"}));
    host.send(json!({"cmd": "set_page", "page": 4}));
    follower.wait_for("song and page 4", step, |v| {
        v["event"] == "page" && v["page"] == 4 && v["song_id"] == "ave-maria"
    });
    let turn = |host: &mut Peer, follower: &Peer, page: u64| {
        let sent = Instant::now();
        host.send(json!({"cmd": "set_page", "page": page}));
        follower.wait_page(page, step);
        (sent.elapsed().as_secs_f64() * 1e3).round()
    };
    // The pack starts right after JOIN_ACCEPT: these turns travel beside it.
    let during: Vec<f64> = [5, 6, 9].map(|p| turn(host, follower, p)).to_vec();
    let done = follower.wait_for("the pack verified", pack, |v| {
        v["event"] == "files_done" && v["kind"] == "pack"
    });
    assert_eq!(done["hash"].as_str().map(str::len), Some(64), "{done}");
    let pack_s = choir.started.elapsed().as_secs_f64();
    assert_received(&choir.pack, &choir.download);
    // The link still carries turns after the transfer.
    let after: Vec<f64> = (11..16).map(|p| turn(host, follower, p)).collect();
    let rejoins = follower.rejoins.get();
    let bytes: u64 = choir.pack.iter().map(|f| f.metadata().unwrap().len()).sum();
    eprintln!(
        "{}",
        json!({"test": name, "joined_ms": joined_ms.round(), "pack_bytes": bytes,
               "pack_done_s": (pack_s * 10.0).round() / 10.0,
               "turn_ms_during_pack": during, "turn_ms_after_pack": after,
               "rejoins": rejoins, "link_states": *follower.link_states.borrow()})
    );
    rejoins
}

/// On loopback lansync sends 16 KiB SCTP packets only to a peer that allows the path MTU probe
/// (PROTOCOL.md §1) and answered it; aiortc, which reads at most 1500 bytes of a datagram, gets
/// ordinary packets.
#[test]
fn a_stock_aiortc_follower_on_loopback_gets_turns_and_the_pack() {
    let Some(python) = python_or_skip("follower on loopback") else {
        return;
    };
    let mut choir = start_choir(
        "loopback",
        &python,
        &[],
        &["--loopback"],
        &[],
        &["--loopback"],
    );
    let rejoins = follow_and_download("loopback", &mut choir, STEP, PACK);
    assert_eq!(rejoins, 0, "a clean path lost the link");
}

#[test]
fn a_stock_aiortc_follower_on_loopback_joins_by_link_and_follows_turns() {
    let Some(python) = python_or_skip("follower turns") else {
        return;
    };
    let dir = scratch("turns");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lansync"));
    let state = dir.join("host");
    let mut host = Peer::spawn(
        "host",
        &bin,
        &["host", "--json", "--loopback", "--state-dir", s(&state)],
    );
    let hosting = host.wait_for("join link", STEP, |v| v["event"] == "hosting_link");
    let script = peer_script();
    let download = dir.join("download");
    let follower = Peer::spawn(
        "aiortc follower",
        &python,
        &[
            s(&script),
            "join",
            hosting["link"].as_str().unwrap(),
            "--loopback",
            "--id",
            "aiortc-bass",
            "--download",
            s(&download),
        ],
    );
    follower.wait_for("JOIN_ACCEPT", STEP, |v| v["event"] == "joined");
    host.wait_for("the follower present", STEP, |v| {
        v["event"] == "presence" && v["count"] == 2
    });
    host.send(json!({"cmd": "set_song", "song_id": "magnificat"}));
    follower.wait_for("the song", STEP, |v| {
        v["event"] == "page" && v["song_id"] == "magnificat" && v["page"] == 0
    });
    for page in 1..=5 {
        host.send(json!({"cmd": "set_page", "page": page}));
        follower.wait_page(page, STEP);
    }
    host.send(json!({"cmd": "end"}));
    follower.wait_for("the end", STEP, |v| v["event"] == "session_ended");
}

/// Joins `host` by session code (SPAKE2, PROTOCOL.md §9.2) at the endpoint mDNS would name,
/// with `password`; returns the follower once joined.
fn join_by_code(python: &Path, host: &Peer, hosting: &Value, id: &str, password: &str) -> Peer {
    let endpoint = format!("127.0.0.1:{}", hosting["port"]);
    let download = scratch(&format!("code-{id}"));
    let script = peer_script();
    let follower = Peer::spawn(
        "aiortc follower by code",
        python,
        &[
            s(&script),
            "join",
            "--code",
            // Typed as a person might: lower case, no dash (normalised, PROTOCOL.md §6.2).
            &hosting["session_code"]
                .as_str()
                .unwrap()
                .replace('-', "")
                .to_lowercase(),
            "--endpoint",
            &endpoint,
            "--password",
            password,
            "--loopback",
            "--id",
            id,
            "--download",
            s(&download),
        ],
    );
    follower.wait_for("JOIN_ACCEPT", STEP, |v| v["event"] == "joined");
    host.wait_for("the follower present", STEP, |v| {
        v["event"] == "presence" && v["count"] == 2
    });
    follower
}

#[test]
fn a_stock_aiortc_follower_joins_by_session_code_with_spake2() {
    let Some(python) = python_or_skip("code join") else {
        return;
    };
    let dir = scratch("code");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lansync"));
    for (name, password) in [("open", ""), ("closed", "Gloria in excelsis")] {
        let state = dir.join(name);
        let mut args = vec!["host", "--json", "--loopback", "--state-dir", s(&state)];
        if !password.is_empty() {
            args.extend(["--password", password]);
        }
        let mut host = Peer::spawn("host", &bin, &args);
        let hosting = host.wait_for("join link", STEP, |v| v["event"] == "hosting_link");
        let follower = join_by_code(&python, &host, &hosting, &format!("py-{name}"), password);
        host.send(json!({"cmd": "set_page", "page": 3}));
        follower.wait_page(3, STEP);
        if !password.is_empty() {
            // A wrong password gives the two sides different keys: the master refuses the proof.
            let wrong = Peer::spawn(
                "aiortc follower, wrong password",
                &python,
                &[
                    s(&peer_script()),
                    "join",
                    "--code",
                    hosting["session_code"].as_str().unwrap(),
                    "--endpoint",
                    &format!("127.0.0.1:{}", hosting["port"]),
                    "--password",
                    "Gloria in excelsis!",
                    "--loopback",
                    "--download",
                    s(&dir.join("wrong")),
                ],
            );
            let refused = wrong.wait_for("a refusal", STEP, |v| v["event"] == "rejected");
            assert_eq!(refused["reason"], "invalid_password", "{refused}");
        }
    }
}

// ------------------------------------------------------------------------ network namespaces

/// Two namespaces joined by one 1500-MTU veth: the master at .1, the follower at .2, where
/// [`Veth::set_loss`] drops UDP at random on input and output. Deleted on drop.
struct Veth {
    master: String,
    follower: String,
}

const SUBNET: &str = "10.231.77";

impl Veth {
    /// Why namespaces cannot be made here, if they cannot.
    fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("needs root (network namespaces)".into());
        }
        [("ip", "-V", "iproute2"), ("nft", "-v", "nftables")]
            .iter()
            .find_map(|(program, flag, package)| {
                let runs = Command::new(program)
                    .arg(flag)
                    .output()
                    .is_ok_and(|o| o.status.success());
                (!runs).then(|| format!("`{program}` not found (install {package})"))
            })
    }

    fn create(tag: &str) -> Veth {
        let id = std::process::id() % 100_000;
        let veth = Veth {
            master: format!("lsst{tag}{id}m"),
            follower: format!("lsst{tag}{id}f"),
        };
        veth.remove();
        let (a, b) = (format!("lst{tag}{id}a"), format!("lst{tag}{id}b"));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), veth.master.clone()],
            vec!["netns".into(), "add".into(), veth.follower.clone()],
            vec![
                "link".into(),
                "add".into(),
                a.clone(),
                "mtu".into(),
                "1500".into(),
                "netns".into(),
                veth.master.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                b.clone(),
                "mtu".into(),
                "1500".into(),
                "netns".into(),
                veth.follower.clone(),
            ],
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            ip(&args).unwrap();
        }
        for (ns, dev, host) in [(&veth.master, &a, 1), (&veth.follower, &b, 2)] {
            let cidr = format!("{SUBNET}.{host}/24");
            ip(&["-n", ns, "link", "set", "lo", "up"]).unwrap();
            ip(&["-n", ns, "addr", "add", &cidr, "dev", dev]).unwrap();
            ip(&["-n", ns, "link", "set", dev, "up"]).unwrap();
        }
        veth
    }

    fn remove(&self) {
        // Deleting a namespace deletes its end of the veth, and with it the pair.
        let _ = ip(&["netns", "del", &self.master]);
        let _ = ip(&["netns", "del", &self.follower]);
    }

    /// Drops `percent` % of the follower's UDP packets at random, each way (the WebRTC link;
    /// the join's HTTP over TCP is spared, so only the link is under test).
    fn set_loss(&self, percent: u32) {
        netns::set_loss(&self.follower, f64::from(percent), "udp").unwrap();
    }

    /// Packets the loss rules dropped so far (both ways).
    fn dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.follower,
                "nft",
                "list",
                "table",
                "inet",
                "lossy",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("counter packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    fn in_master(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.master]
    }

    fn in_follower(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.follower]
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        self.remove();
    }
}

fn veth_or_skip(test: &str) -> bool {
    match Veth::unavailable() {
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            false
        }
        None => true,
    }
}

#[test]
fn a_stock_aiortc_follower_on_a_veth_gets_turns_and_the_pack() {
    let test = "follower on a veth";
    let Some(python) = python_or_skip(test) else {
        return;
    };
    if !veth_or_skip(test) {
        return;
    }
    let veth = Veth::create("c");
    let mut choir = start_choir(
        "veth",
        &python,
        &veth.in_master(),
        &["--no-mdns"],
        &veth.in_follower(),
        &[],
    );
    let rejoins = follow_and_download("veth", &mut choir, STEP, PACK);
    assert_eq!(rejoins, 0, "a clean path lost the link");
}

#[test]
fn a_stock_aiortc_follower_behind_5_percent_loss_gets_turns_and_the_pack() {
    let test = "follower behind 5 % loss";
    let Some(python) = python_or_skip(test) else {
        return;
    };
    if !veth_or_skip(test) {
        return;
    }
    let veth = Veth::create("l");
    veth.set_loss(5);
    let mut choir = start_choir(
        "lossy",
        &python,
        &veth.in_master(),
        &["--no-mdns"],
        &veth.in_follower(),
        &[],
    );
    follow_and_download("veth, 5 % loss", &mut choir, LOSSY_STEP, LOSSY_PACK);
    let dropped = veth.dropped();
    eprintln!(
        "{}",
        json!({"test": "veth, 5 % loss", "udp_packets_dropped": dropped})
    );
    assert!(dropped > 0, "the loss rules dropped nothing");
}

#[test]
fn a_stock_aiortc_follower_resumes_the_pack_after_its_link_is_lost() {
    let test = "resume after a lost link";
    let Some(python) = python_or_skip(test) else {
        return;
    };
    if !veth_or_skip(test) {
        return;
    }
    let veth = Veth::create("r");
    let choir = start_choir(
        "resume",
        &python,
        &veth.in_master(),
        &["--no-mdns"],
        &veth.in_follower(),
        &[],
    );
    let follower = &choir.follower;
    follower.wait_for("JOIN_ACCEPT", STEP, |v| v["event"] == "joined");
    follower.wait_for("1 MiB of the pack", PACK, |v| {
        v["event"] == "files_progress" && v["bytes_received"].as_u64() >= Some(1 << 20)
    });
    // Frozen past the master's 10 s heartbeat (PROTOCOL.md §6.4): the master closes the link.
    // The length of the cut, not a synchronisation.
    follower.signal("-STOP");
    std::thread::sleep(Duration::from_secs(12));
    follower.signal("-CONT");
    let rejoined = follower.wait_for("the rejoin", STEP, |v| v["event"] == "joined");
    assert_eq!(rejoined["rejoin"], true, "{rejoined}");
    // The master offers the pack again; the stock peer asks only for what it lacks (PROTOCOL.md §11.5).
    let offer = follower.wait_for("the offer after the rejoin", STEP, |v| {
        v["event"] == "offer"
    });
    let from: Vec<u64> = offer["want"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["from"].as_u64().unwrap())
        .collect();
    assert!(
        from.iter().any(|&f| f > 0) && from.iter().all(|f| f % 16_376 == 0),
        "resumed from {from:?}"
    );
    eprintln!("{}", json!({"test": test, "resumed_from": from}));
    follower.wait_for("the pack verified", PACK, |v| {
        v["event"] == "files_done" && v["kind"] == "pack"
    });
    assert_received(&choir.pack, &choir.download);
}
