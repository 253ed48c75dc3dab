//! A choir master in a dozen lines: host a session, print how to join it, turn a page every few
//! seconds, and print what happens.
//!
//! ```sh
//! cargo run --example host                 # on the LAN (advertised with mDNS)
//! cargo run --example host -- --loopback   # everything on this machine
//! ```
//! Then on another device (or terminal): `cargo run --example join -- 'LINK'`.

use lansync::{AppEvent, Host, HostOptions};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), lansync::Error> {
    let loopback = std::env::args().any(|a| a == "--loopback");
    let opts = if loopback {
        HostOptions::loopback()
    } else {
        HostOptions::default()
    };
    let mut host = Host::start(opts).await?;

    // The QR code of a real app carries this link; a session code works with mDNS.
    let link = host.lan_join_link()?;
    println!("session code {}", host.record().session_code.as_str());
    println!("join link {}", link.to_url());
    host.set_song("ave-maria")?;

    let mut events = host.events();
    let mut turn = tokio::time::interval(Duration::from_secs(3));
    let mut page = 0;
    loop {
        tokio::select! {
            // Every few seconds the master turns the page for everyone.
            _ = turn.tick() => {
                host.set_page(page)?;
                page += 1;
            }
            event = events.recv() => match event {
                Some(AppEvent::Session(e)) => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
                Some(other) => println!("{other:?}"),
                None => break,
            },
            // Ctrl-C stops the host; the session stays resumable with a state directory.
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    host.shutdown().await;
    Ok(())
}
