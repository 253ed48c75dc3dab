//! Follow a choir session from your own program: join a host, print the page each time the
//! master turns it, quit on Ctrl-C.
//!
//! ```text
//! cargo run --example join -- 'lansync://join?h=…'        # the link of the host's QR code
//! cargo run --example join -- ABCD-EFGH [PASSWORD]        # or its session code (found with mDNS)
//! ```

use lansync::session::Event;
use lansync::{AppEvent, Join, JoinHow, JoinOptions};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let loopback = args.iter().any(|a| a == "--loopback");
    let mut words = args.iter().filter(|a| *a != "--loopback");
    let (Some(target), password) = (words.next(), words.next().cloned()) else {
        eprintln!("usage: join LINK_OR_CODE [PASSWORD] [--loopback]");
        std::process::exit(2);
    };
    if let Err(e) = run(target, password, loopback).await {
        // Every failure is one sentence for people, and a stable code for programs.
        eprintln!("error ({}): {e}", e.code());
        std::process::exit(1);
    }
}

async fn run(target: &str, password: Option<String>, loopback: bool) -> Result<(), lansync::Error> {
    // A link or a code, as a person would paste it.
    let how = JoinHow::parse(target, password)?;
    // A host on this machine only (`--loopback`) is reached over loopback only.
    let local = matches!(&how, JoinHow::Link(link) if link.addr.is_loopback());
    let opts = if loopback || local {
        JoinOptions::loopback()
    } else {
        JoinOptions::default()
    };
    // Returns once joined; a refusal or an unreachable host is an `Err` at once.
    let mut join = Join::start(how, opts).await?;
    let mut events = join.events();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(AppEvent::Session(Event::Joined { session_name, .. })) => {
                    println!("joined \"{session_name}\"");
                }
                // Pages are zero-based in the library; people count from 1.
                Some(AppEvent::Session(Event::Page { page, song_id, .. })) => {
                    let song = song_id.map(|s| format!(" of {s}")).unwrap_or_default();
                    println!("page {}{song}", page + 1);
                }
                Some(AppEvent::Session(Event::SessionEnded)) => {
                    println!("the session has ended");
                    return Ok(());
                }
                Some(_) => {} // links, participants, files: not shown here
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
