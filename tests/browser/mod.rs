//! A headless Chromium driven over the Chrome DevTools Protocol on `--remote-debugging-pipe`
//! (NUL-terminated JSON on the child's fds 3 and 4), launched inside a network namespace; and
//! LANs of namespaces for it. Shared by `tests/stock_chromium.rs` (a page written from
//! PROTOCOL.md §1 as lansync's peer) and `tests/browser_followers.rs` (the follower page).
//!
//! Needs root, iproute2, `chromium` (or `LANSYNC_CHROMIUM=/path/to/chrome`) and, for loss or
//! cuts, nftables: without them [`Env::get`] says why and the test passes, unless `CI` is set,
//! when it fails.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::oneshot;

pub mod lan;
pub mod page;

// ---------------------------------------------------------------------------------------------
// What this machine has.

/// Tests of one binary share two cores with Chromium: one at a time, so figures mean something.
static SERIAL: Mutex<()> = Mutex::new(());

/// Everything a test needs, or why it cannot run (then: a failure under CI, a skip elsewhere).
pub struct Env {
    /// The browser's program.
    pub chromium: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Env {
    /// The environment, or `None` (after saying why) when the test cannot run here.
    pub fn get(needs_nft: bool) -> Option<Env> {
        match Self::missing(needs_nft) {
            Ok(chromium) => Some(Env {
                chromium,
                _serial: SERIAL.lock().unwrap_or_else(|p| p.into_inner()),
            }),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("Chromium test cannot run under CI: {why}")
            }
            Err(why) => {
                eprintln!("SKIP: {why}");
                None
            }
        }
    }

    fn missing(needs_nft: bool) -> Result<PathBuf, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root (network namespaces)".into());
        }
        if !runs("ip", "-V") {
            return Err("`ip` not found (apt-get install iproute2)".into());
        }
        if needs_nft && !runs("nft", "--version") {
            return Err("`nft` not found (apt-get install nftables)".into());
        }
        chromium_path().ok_or_else(|| {
            "no Chromium: apt-get install chromium, or set LANSYNC_CHROMIUM".to_string()
        })
    }
}

fn runs(program: &str, flag: &str) -> bool {
    Command::new(program)
        .arg(flag)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn chromium_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LANSYNC_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name no other test of this run uses: `{prefix}{pid}-{n}`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Chromium over the DevTools pipe.

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// How the browser hands out its local addresses in ICE candidates.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Addresses {
    /// As a phone does: behind random `<uuid>.local` mDNS names (Chromium's default).
    Hidden,
    /// As plain addresses (`--disable-features=WebRtcHideLocalIpsWithMdns`).
    Shown,
}

/// A headless Chromium with one page, attached. Closed (and its process group killed if it
/// lingers) on drop.
pub struct Browser {
    child: Child,
    to: Mutex<File>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    dir: PathBuf,
}

impl Browser {
    /// Starts Chromium in namespace `ns` with one blank page.
    pub async fn launch(chromium: &Path, ns: &str, addresses: Addresses) -> Browser {
        let dir = std::env::temp_dir().join(unique("lansync-chromium-"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("profile directory");
        let (to_read, to_write) = pipe();
        let (from_read, from_write) = pipe();
        let log = File::create(dir.join("chromium.log")).expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()));
        if addresses == Addresses::Shown {
            cmd.arg("--disable-features=WebRtcHideLocalIpsWithMdns");
        }
        // E.g. `--enable-logging=stderr --v=1` (dcsctp then logs every SCTP packet in text pcap
        // form); `LANSYNC_CHROMIUM_LOG=FILE` keeps the log of the last browser closed.
        cmd.args(
            std::env::var("LANSYNC_CHROMIUM_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. Both fds are
        // first copied above 9, so neither can be overwritten by the other's dup2.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(to_read, libc::F_DUPFD, 10);
                let b = libc::fcntl(from_write, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn chromium");
        // SAFETY: fds from pipe2 owned by nobody else; the child has its own copies.
        let (to, from) = unsafe {
            libc::close(to_read);
            libc::close(from_write);
            (File::from_raw_fd(to_write), File::from_raw_fd(from_read))
        };
        let pending: Pending = Arc::default();
        let inbox = pending.clone();
        std::thread::spawn(move || read_replies(from, &inbox));
        let mut browser = Browser {
            child,
            to: Mutex::new(to),
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            dir,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}), None)
            .await
            .unwrap_or_else(|e| panic!("Chromium did not start: {e}; {}", browser.log_tail()));
        let target = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
                None,
            )
            .await
            .expect("attach to the page");
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        browser
    }

    /// One DevTools command; its `result`, or the error it returned.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to
            .lock()
            .unwrap()
            .write_all(&bytes)
            .map_err(|e| format!("write to Chromium: {e}"))?;
        // The page's own waits are shorter; this only guards against a dead browser.
        let reply = tokio::time::timeout(Duration::from_secs(900), rx)
            .await
            .map_err(|_| format!("no reply to {method}"))?
            .map_err(|_| format!("Chromium closed the pipe during {method}"))?;
        match reply.get("error") {
            Some(e) => Err(format!("{method}: {e}")),
            None => Ok(reply["result"].clone()),
        }
    }

    /// A DevTools command to the page.
    pub async fn page_call(&self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.call(method, params, Some(&session)).await
    }

    /// Evaluates `expr` in the page, awaiting a promise; its value or the exception's text.
    pub async fn eval(&self, expr: &str, deadline: Duration) -> Result<Value, String> {
        let params = json!({
            "expression": expr,
            "awaitPromise": true,
            "returnByValue": true,
            "timeout": deadline.as_millis() as u64,
        });
        let r = self.page_call("Runtime.evaluate", params).await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or(ex["text"].as_str())
                .unwrap_or("exception");
            return Err(text.to_owned());
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expr` every 20 ms until it yields a value that is neither `null` nor `false`, and
    /// returns it; errors (e.g. while the page loads) count as not yet. Fails after `deadline`
    /// with `what` and the last value seen.
    pub async fn wait_until(&self, what: &str, expr: &str, deadline: Duration) -> Value {
        let end = Instant::now() + deadline;
        let mut last = Value::Null;
        loop {
            match self.eval(expr, Duration::from_secs(5)).await {
                Ok(Value::Null) | Ok(Value::Bool(false)) => {}
                Ok(v) => return v,
                Err(e) => last = json!(e),
            }
            if Instant::now() > end {
                panic!(
                    "no {what} within {deadline:?} (last error: {last}); {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The page's viewport as a phone's: `width`×`height` CSS pixels at 3 device pixels each,
    /// mobile layout and touch.
    pub async fn phone_viewport(&self, width: u32, height: u32) -> Result<(), String> {
        self.page_call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 3, "mobile": true}),
        )
        .await?;
        self.page_call(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": true}),
        )
        .await?;
        Ok(())
    }

    /// Opens `url` in the page (returns once navigation started; wait on the page's own state).
    pub async fn navigate(&self, url: &str) -> Result<(), String> {
        let r = self.page_call("Page.navigate", json!({"url": url})).await?;
        match r.get("errorText") {
            Some(e) => Err(format!("navigate to {url}: {e}")),
            None => Ok(()),
        }
    }

    /// Reloads the page (returns once the reload started).
    pub async fn reload(&self) -> Result<(), String> {
        self.page_call("Page.reload", json!({"ignoreCache": true}))
            .await
            .map(|_| ())
    }

    /// A PNG of the page's viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        let r = self
            .page_call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("screenshot: {e}"))
    }

    /// The last lines of Chromium's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).collect();
        format!(
            "Chromium's log: {}",
            lines[lines.len().saturating_sub(10)..].join("\n")
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let close = json!({"id": 0, "method": "Browser.close"}).to_string() + "\0";
        if let Ok(mut to) = self.to.lock() {
            let _ = to.write_all(close.as_bytes());
        }
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its helpers (zygote, renderer, network service) share its process group.
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: signals only the process group this test created for Chromium.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        if let Some(keep) = std::env::var_os("LANSYNC_CHROMIUM_LOG") {
            let _ = std::fs::copy(self.dir.join("chromium.log"), keep);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// Hands each reply to the call waiting for its id; events are not used.
fn read_replies(mut from: File, pending: &Pending) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|&b| b == 0) {
            let msg: Vec<u8> = buf.drain(..=end).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) else {
                continue;
            };
            if let Some(id) = v["id"].as_u64() {
                if let Some(tx) = pending.lock().unwrap().remove(&id) {
                    let _ = tx.send(v);
                }
            }
        }
    }
    // Dropping the senders tells every waiting call that Chromium is gone.
    pending.lock().unwrap().clear();
}
