//! Two devices in step from codes alone: one offers, the other answers, then either turns pages
//! and both print every page as it changes.
//!
//! ```sh
//! cargo run --example pair                       # prints an invite code, reads the answer code
//! cargo run --example pair -- answer LS.…        # on the other device: prints the answer code
//! ```
//! Paste the answer code into the first one. Then type a page number (0 is the first page) and
//! Enter on either device, `q` to quit. Add `--loopback` to both to try it on one machine.

use lansync::session::Event;
use lansync::{AppEvent, Pair, PairOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = if args.iter().any(|a| a == "--loopback") {
        PairOptions::loopback()
    } else {
        PairOptions::default()
    };
    let mut input = BufReader::new(tokio::io::stdin()).lines();

    let mut pair = if args.first().map(String::as_str) == Some("answer") {
        let invite = args.get(1).ok_or("usage: pair answer INVITE_CODE")?;
        let answer = Pair::answer(invite, opts).await?;
        println!("answer code: {}", answer.code());
        answer.open().await?
    } else {
        let mut offer = Pair::offer(opts).await?;
        println!("invite code: {}", offer.code());
        loop {
            let line = input.next_line().await?.ok_or("no answer code")?;
            match offer.accept(line.trim()).await {
                Ok(pair) => break pair,
                // A wrong paste: the offer is still good, try again.
                Err(e @ lansync::Error::Invite(_)) => eprintln!("{e}; paste the answer code"),
                Err(e) => return Err(e.into()),
            }
        }
    };
    println!("paired");

    let mut events = pair.events();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(AppEvent::Session(Event::Page { page, .. })) => println!("page {page}"),
                Some(AppEvent::Session(Event::State { reason, .. })) if reason == "partner left" => {
                    println!("partner left")
                }
                Some(_) => {}
                None => break,
            },
            line = input.next_line() => match line?.as_deref().map(str::trim) {
                None | Some("q") => break,
                Some(text) => match text.parse() {
                    Ok(page) => pair.set_page(page)?,
                    Err(_) => eprintln!("type a page number, or q"),
                },
            },
        }
    }
    // Tells the partner at once, instead of letting it wait for a silent link.
    pair.close().await;
    Ok(())
}
