//! The follower page's test hooks (`window.lansync`: `status()`, `events`, `command()`,
//! `cut()`), read and driven over the DevTools protocol.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Browser;

/// What every page state is given to arrive: joining and turns take well under a second.
pub const WAIT: Duration = Duration::from_secs(30);

/// A phone: a browser in its own namespace, on the follower page.
pub struct Phone {
    /// Its browser.
    pub b: Browser,
    /// Its number, from 0.
    pub n: usize,
}

impl Phone {
    /// `lansync.status()`.
    pub async fn status(&self) -> Value {
        self.b
            .eval("lansync.status()", WAIT)
            .await
            .unwrap_or_else(|e| panic!("phone {}: status: {e}", self.n))
    }

    /// Waits until the status satisfies `pred` (JavaScript over `s`), and returns it.
    pub async fn wait(&self, what: &str, pred: &str, deadline: Duration) -> Value {
        let expr = format!(
            "(() => {{ if (!window.lansync) return null; const s = lansync.status(); \
             return ({pred}) ? s : null; }})()"
        );
        self.b
            .wait_until(&format!("phone {}: {what}", self.n), &expr, deadline)
            .await
    }

    /// Waits until the phone follows and shows page `page` (0-based).
    pub async fn wait_page(&self, page: u32) -> Value {
        let pred = format!("s.page === {page} && s.follow");
        self.wait(&format!("page {page}"), &pred, WAIT).await
    }

    /// `lansync.command(cmd)`: `free`, `follow`, `set_page` (in free mode).
    pub async fn command(&self, cmd: Value) {
        self.b
            .eval(&format!("lansync.command({cmd})"), WAIT)
            .await
            .unwrap_or_else(|e| panic!("phone {}: command {cmd}: {e}", self.n));
    }

    /// How many of the page's events are `kind` (JSON `event` field).
    pub async fn count(&self, kind: &str) -> u64 {
        let expr = format!("lansync.events.filter((e) => e.event.event === '{kind}').length");
        self.b
            .eval(&expr, WAIT)
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }

    /// The page's clock now, bracketed by the test's: (test instant in the middle, page ms).
    pub async fn clock(&self) -> (Instant, f64) {
        let before = Instant::now();
        let ms = self
            .b
            .eval("performance.now()", WAIT)
            .await
            .expect("page clock");
        let after = Instant::now();
        (
            before + (after - before) / 2,
            ms.as_f64().expect("a number"),
        )
    }

    /// When (page ms) the page's machine reported page `page`, first.
    pub async fn page_event_at(&self, page: u32) -> Option<f64> {
        let expr = format!(
            "(lansync.events.find((e) => e.event.event === 'page' && e.event.page === {page}) \
             || {{t: null}}).t"
        );
        self.b.eval(&expr, WAIT).await.ok()?.as_f64()
    }
}
