//! `lansync pair` with no code: resume the remembered pair (or `--forget` it), and the words
//! for the events of a remembered pair — found again, given up with the command that retries.

use super::{fail, options, shell_word, split, FileTransfer, PairArgs};
use crate::console::{self, Out};
use lansync::session::{Event, LinkState};
use lansync::{Error, Pair};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The command that resumes this device's remembered pair.
pub(super) fn resume_command(args: &PairArgs, dir: &Path) -> String {
    let flag = if args.loopback { " --loopback" } else { "" };
    format!(
        "lansync pair{flag} --state-dir {}",
        shell_word(&dir.display().to_string())
    )
}

/// `lansync pair --forget`: deletes the remembered pair.
pub(super) fn forget(args: &PairArgs) -> bool {
    let out = Out::new(args.json);
    let Some(dir) = options(args, &FileTransfer::default()).state_dir else {
        out.error("bad-command", "no state directory: pass --state-dir DIR");
        return false;
    };
    // Never under a running pair's feet.
    let _held = match lansync::node::lock_state_dir(&dir) {
        Ok(Some(held)) => held,
        Ok(None) => {
            out.error(
                "bad-command",
                &format!(
                    "a lansync pair is running with {}: quit it first",
                    dir.display()
                ),
            );
            return false;
        }
        Err(e) => {
            fail(&out, &e);
            return false;
        }
    };
    match Pair::forget_in(&dir) {
        Ok(forgotten) => {
            out.emit(
                json!({"event":"forgotten","forgotten":forgotten,"state_dir":dir.display().to_string()}),
                || match forgotten {
                    true => "Forgot the remembered pair: pair again with codes (`lansync pair offer`)."
                        .into(),
                    false => format!("No pair is remembered in {}.", dir.display()),
                },
            );
            true
        }
        Err(e) => {
            fail(&out, &e);
            false
        }
    }
}

/// `lansync pair` with no code: resumes the remembered pair.
pub(super) async fn resume(args: &PairArgs) -> bool {
    let out = Out::new(args.json);
    // Held until the program ends.
    let held = match crate::state::claim(args.state_dir.as_ref(), "pair") {
        Ok(held) => held,
        Err(e) => {
            fail(&out, &e);
            return false;
        }
    };
    let mut opts = options(args, &FileTransfer::default());
    let dir = held.dir().to_path_buf();
    opts.state_dir = Some(dir.clone());
    out.ready(console::Role::Solo, opts.state_dir.as_deref());
    let mut pair = match Pair::resume(opts).await {
        Ok(pair) => pair,
        Err(Error::NothingToRejoin { .. }) => {
            out.error(
                "no-remembered-pair",
                &format!(
                    "no pair is remembered in {}: pair with codes first (`lansync pair offer` \
                     on one device, then the command it prints on the other)",
                    dir.display()
                ),
            );
            return false;
        }
        Err(e) => {
            fail(&out, &e);
            return false;
        }
    };
    let partner = Pair::remembered_partner(&dir).unwrap_or_else(|| "the partner".into());
    out.emit(json!({"event":"resuming","partner":partner}), || {
        format!("Looking for {partner}…")
    });
    let tell = Teller {
        out: Out::new(args.json),
        dir: dir.clone(),
        retry: resume_command(args, &dir),
        apart: true,
    };
    let (session, files) = split(pair.events(), false, Some(tell));
    let ok = console::session(
        &out,
        pair.node.clone(),
        session,
        files,
        console::InputLines::stdin(),
        console::Role::Solo,
    )
    .await;
    let remembered = pair.remembered();
    pair.close().await;
    said_bye(&out, remembered, &resume_command(args, &dir));
    ok
}

/// What quitting a remembered pair tells people: how to find the partner again.
pub(super) fn said_bye(out: &Out, remembered: bool, command: &str) {
    if remembered && !out.json() {
        println!("Stopped. The pair is remembered: run `{command}` to find the partner again.");
    }
}

/// Tells the events of a pair that is, or may become, remembered in words a person acts on:
/// the pair remembered, the partner found again, and a give-up with the command that retries.
pub(super) struct Teller {
    pub(super) out: Out,
    pub(super) dir: PathBuf,
    pub(super) retry: String,
    /// The partner is not (yet) reached: its next link is news.
    pub(super) apart: bool,
}

impl Teller {
    /// Tells `e` and returns `None`, or returns it for the console.
    pub(super) fn tell(&mut self, e: Event) -> Option<Event> {
        let partner =
            || Pair::remembered_partner(&self.dir).unwrap_or_else(|| "the partner".into());
        // Read only for the events that depend on it: a page turn reads no file.
        let remembered = || Pair::has_remembered(&self.dir);
        match &e {
            Event::Link {
                state: LinkState::Connected,
                ..
            } => {
                if std::mem::take(&mut self.apart) && remembered() {
                    let name = partner();
                    self.out
                        .emit(json!({"event":"partner_found","partner":name}), || {
                            format!("{name} is back")
                        });
                }
                Some(e)
            }
            Event::Link { .. } => {
                self.apart = true;
                Some(e)
            }
            Event::GaveUp { attempts } if remembered() => {
                let (name, retry) = (partner(), self.retry.clone());
                self.out.emit(
                    json!({"event":"gave_up","attempts":attempts,"retry":retry}),
                    || {
                        format!(
                            "{name} did not come back after {attempts} attempts; it is found \
                             again as soon as it runs `lansync pair` (r: try now, or later run \
                             `{retry}`)"
                        )
                    },
                );
                None
            }
            Event::PairRemembered { .. } => {
                let name = partner();
                let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                v["partner"] = json!(name);
                self.out.emit(v, || {
                    format!("Paired with {name} — remembered: next time run `lansync pair` on both")
                });
                None
            }
            _ => Some(e),
        }
    }
}
