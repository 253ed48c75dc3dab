//! `lansync host`: a choir master on the LAN. Shows the join QR code and session code, advertises
//! the session with mDNS, and turns pages for everyone who joins. Its session, DTLS identity and
//! port live in `--state-dir` (default: the per-user data directory, `…/lansync/host`), so a
//! restart (or a crash) resumes the same session: followers rejoin by themselves and their QR
//! link stays valid.

use crate::console::{self, Out, Role};
use crate::files_ui;
use lansync::protocol::PlaybackOp;
use lansync::session::{Command, MasterConfig};
use lansync::transfer::ManifestKind;
use lansync::transport;
use lansync::{Host, HostOptions};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Said to the person hosting a session without a password (PROTOCOL.md §9.6).
const OPEN_SESSION: &str = "Open session: anyone on this network who sees the code can join, and \
followers joining by code cannot tell this master from an impostor. --password closes it.";

/// Said when the machine has no LAN address: a link to 127.0.0.1 would reach nobody.
const NO_LAN: &str = "no network interface besides loopback: connect to the Wi-Fi the singers \
use, or pass --loopback to test on this machine";

/// Options of `lansync host`.
#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// This device's name.
    #[arg(long, default_value = "Master")]
    name: String,
    /// The session's name, shown to followers.
    #[arg(long = "session-name", default_value = "Rehearsal")]
    session_name: String,
    /// Require this password with a session code (QR links carry the token instead).
    #[arg(long)]
    password: Option<String>,
    /// Most followers at once.
    #[arg(long = "max-followers", default_value_t = 200)]
    max_followers: usize,
    /// One JSON object per line on stdout; JSON commands on stdin.
    #[arg(long)]
    json: bool,
    /// Serve on loopback only (everything on this machine); no mDNS.
    ///
    /// Every follower then has the same address, so the join endpoint's per-address limits are
    /// lifted: 1000 requests a second, and the per-address connection and answer caps become
    /// the totals (PROTOCOL.md §9.3).
    #[arg(long)]
    loopback: bool,
    /// Where the session, identity and port are kept (default: lansync/host in your user data
    /// directory, e.g. ~/.local/share/lansync/host).
    #[arg(long = "state-dir")]
    state_dir: Option<PathBuf>,
    /// Port of the join endpoint (default: the one used last time, else any free one).
    #[arg(long)]
    port: Option<u16>,
    /// Do not advertise the session with mDNS (followers then join by QR link only).
    #[arg(long = "no-mdns")]
    no_mdns: bool,
    /// Publish the files of this directory as the session pack (scores, images, audio, video):
    /// every follower downloads and verifies them on joining.
    #[arg(long)]
    pack: Option<PathBuf>,
    /// Publish the files of this directory as the session media.
    #[arg(long)]
    media: Option<PathBuf>,
    /// Start a shared countdown (a drawing session's pose timer): `90s`, `2m`, `1m30s`.
    #[arg(long, value_parser = console::parse_duration)]
    timer: Option<Duration>,
}

/// Runs `lansync host`; returns whether it ended well.
pub async fn run(args: HostArgs) -> bool {
    let out = Out::new(args.json);
    // Held until the program ends.
    let held = match crate::state::claim(args.state_dir.as_ref(), "host") {
        Ok(held) => held,
        Err(e) => {
            out.ready(Role::Master, None);
            out.error("state-dir", &e.to_string());
            return false;
        }
    };
    let dir = held.dir().to_path_buf();
    out.ready(Role::Master, Some(&dir));
    // Fail before anything is created: a link to 127.0.0.1 would reach nobody.
    let lan = transport::lan_addresses();
    if lan.is_empty() && !args.loopback {
        out.error(lansync::Error::NoNetwork.code(), NO_LAN);
        return false;
    }
    match host(&args, &dir, lan.first().copied(), &out).await {
        Ok(ok) => ok,
        Err(msg) => {
            out.error(msg.code(), &msg.to_string());
            false
        }
    }
}

/// Hosts from the state directory `dir`; `lan` is the address followers reach (none with
/// `--loopback`).
async fn host(
    args: &HostArgs,
    dir: &Path,
    lan: Option<IpAddr>,
    out: &Out,
) -> Result<bool, lansync::Error> {
    let mut master = MasterConfig::new(""); // the id kept in the state directory
    master.device_name = args.name.clone();
    master.session_name = args.session_name.clone();
    master.password = args.password.clone();
    master.max_followers = args.max_followers;
    let mut opts = if args.loopback {
        HostOptions::loopback()
    } else {
        HostOptions::default()
    };
    opts.master = master;
    opts.state_dir = Some(dir.to_path_buf());
    opts.advertise = !args.no_mdns;
    if let Some(port) = args.port {
        opts.bind.set_port(port);
    }
    let mut host = Host::start(opts).await?;
    if let Some(bad) = host.bad_record() {
        console::bad_record(out, bad);
    }
    if let Some(why) = host.advert_problem() {
        out.error("network-unavailable", why);
    }
    let (events, files_events) = console::split(host.events());
    // Published before anyone can join, so every follower gets the files with its first snapshot.
    for (kind, dir) in [
        (ManifestKind::Pack, &args.pack),
        (ManifestKind::Media, &args.media),
    ] {
        if let Some(dir) = dir {
            if !files_ui::run(out, &host.node, (kind, None, Some(dir.clone()))).await {
                return Ok(false);
            }
        }
    }
    let port = host.local_addr().port();
    // The address a follower uses: loopback, or this machine's first LAN address.
    let reach = match lan {
        Some(ip) if !args.loopback => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let rec = host.record().clone();
    let link = host.join_link(reach).to_url();
    // The follower page for phones without lansync (PROTOCOL.md §9.7).
    let page = host.join_link(reach).to_page_url();
    out.emit(
        json!({"event":"hosting_link","session_code":rec.session_code.as_str(),
               "session_id":rec.session_id,"session_name":rec.session_name,"link":link,
               "page":page,"port":port,"open":rec.password.is_none()}),
        || banner(&rec, &link, &page, args.loopback),
    );
    if let Some(d) = args.timer {
        let _ = host.node.command(Command::Playback(PlaybackOp::Timer {
            duration_us: d.as_micros() as u64,
            phase: String::new(),
        }));
    }
    let stdin = console::InputLines::stdin();
    let ok = console::session(
        out,
        host.node.clone(),
        events,
        Some(files_events),
        stdin,
        Role::Master,
    )
    .await;
    // Stops the endpoint and withdraws the mDNS advert, its goodbye sent.
    host.shutdown().await;
    Ok(ok)
}

fn banner(rec: &lansync::session::MasterRecord, link: &str, page: &str, loopback: bool) -> String {
    let code = rec.session_code.as_str();
    let flag = if loopback { " --loopback" } else { "" };
    let (password, security) = match rec.password {
        Some(_) => (
            " --password …",
            "Password set: joining by code asks for it.",
        ),
        None => ("", OPEN_SESSION),
    };
    // One QR code for everyone: the phones' URL opens the follower page in a phone's browser,
    // and carries the join link that lansync devices read from it (PROTOCOL.md §9.7).
    format!(
        "\"{}\" — session code {code}\n\
         On the other devices: lansync join{flag} '{link}'\n\
         \x20                  or lansync join{flag} {code}{password}\n\
         On a phone (no app needed): scan the QR code, or open {page}\n\
         {security}\n\
         {}\
         Session code {code} (scan the QR code or type the code)",
        rec.session_name,
        lansync::invite::qr::qr_terminal_compact(page),
    )
}
