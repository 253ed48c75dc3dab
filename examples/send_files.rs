//! Files to one device by invite code, no network service: the sender checks its files and
//! prints an invite code, the receiver answers it, and both exit once the receiver has verified
//! every file (SHA-256).
//!
//! ```sh
//! cargo run --example send_files -- send score.pdf tutti.ogg   # prints the invite code, reads the answer
//! cargo run --example send_files -- receive LS.… ./inbox       # prints the answer code
//! ```
//! Paste the answer code into the sender. Add `--loopback` to both to try it on one machine.

use lansync::node::FilesEvent;
use lansync::{AppEvent, Pair, PairOptions};
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = if args.iter().any(|a| a == "--loopback") {
        PairOptions::loopback()
    } else {
        PairOptions::default()
    };
    args.retain(|a| a != "--loopback");

    let mut pair = match args.first().map(String::as_str) {
        Some("send") => {
            // Checked (type, size, hash) before the invite exists: a typo fails here.
            opts.send = args[1..].iter().map(PathBuf::from).collect();
            let mut offer = Pair::offer(opts).await?;
            println!("invite code: {}", offer.code());
            let mut input = BufReader::new(tokio::io::stdin()).lines();
            loop {
                let line = input.next_line().await?.ok_or("no answer code")?;
                match offer.accept(line.trim()).await {
                    Ok(pair) => break pair,
                    Err(e @ lansync::Error::Invite(_)) => eprintln!("{e}; paste the answer code"),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Some("receive") => {
            let invite = args
                .get(1)
                .ok_or("usage: send_files receive INVITE_CODE [DIR]")?;
            opts.receive_dir = Some(args.get(2).map_or(".".into(), PathBuf::from));
            let answer = Pair::answer(invite, opts).await?;
            println!("answer code: {}", answer.code());
            answer.open().await?
        }
        _ => {
            return Err(
                "usage: send_files send FILE… | send_files receive INVITE_CODE [DIR]".into(),
            )
        }
    };

    // The receiver verifies the set; the sender hears it confirmed (TRANSFER_DONE).
    let mut events = pair.events();
    let mut verified = false;
    while let Some(event) = events.recv().await {
        match event {
            AppEvent::Files(FilesEvent::FileReceived { path, .. }) => {
                println!("received {}", path.display())
            }
            AppEvent::Files(FilesEvent::Done { .. }) => {
                println!("verified");
                verified = true;
                break;
            }
            AppEvent::Files(FilesEvent::Failed { message, .. }) => {
                eprintln!("stopped: {message}");
                break;
            }
            _ => {}
        }
    }
    pair.close().await;
    if !verified {
        std::process::exit(1);
    }
    Ok(())
}
