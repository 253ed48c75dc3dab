//! `lansync`: run any role of the sync engine from a terminal, or drive it from another program
//! with `--json` (one JSON object per line on stdout).

mod console;
mod demo;
mod demo_live;
mod doctor;
mod files_ui;
mod host;
mod join;
mod pair;
mod sessions;
mod state;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lansync",
    version,
    about = "Keep devices on one LAN in step, with no server"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A scripted rehearsal over real WebRTC (or `--sim`): a master and followers through page
    /// turns, song changes, free mode, a cut link, a master crash and the end of the session;
    /// prints what happened, checks it, and measures it.
    Demo(demo::DemoArgs),
    /// Solo pairing with no network service: exchange an invite and an answer code once; after
    /// that `lansync pair` alone, on both devices, finds the remembered partner again.
    Pair(pair::PairCli),
    /// Host a choir session on the LAN: QR link, session code, mDNS, page turns for everyone.
    Host(host::HostArgs),
    /// Follow a choir session: by QR link, by session code, or rejoin the stored one.
    Join(join::JoinArgs),
    /// List the choir sessions advertised on the local network (mDNS).
    Sessions(sessions::SessionsArgs),
    /// Send files to one device: prints an invite code, sends once paired, exits when the
    /// partner has verified them.
    Send {
        /// The files (PDF, MusicXML, images, audio, video).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        #[command(flatten)]
        args: pair::PairArgs,
    },
    /// Receive files from `lansync send`: answers its invite code, exits when they are verified.
    Receive {
        /// The sender's invite code; read from the input when left out.
        code: Option<String>,
        /// Where the files go.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        #[command(flatten)]
        args: pair::PairArgs,
    },
    /// Why devices don't see each other: network, mDNS, firewall, and a peer's TCP and UDP.
    Doctor(doctor::DoctorArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LANSYNC_LOG")
                .unwrap_or_else(|_| "error,lansync=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // A master serves many connections and links: lift the default soft limit (often 1024).
    if let Err(e) = lansync::signaling::raise_fd_limit() {
        tracing::warn!(%e, "cannot raise the open-file limit");
    }
    let cli = Cli::parse();
    let ok = match cli.command {
        Cmd::Demo(args) => demo::run(&args),
        Cmd::Pair(cmd) => block_on(pair::run(cmd)),
        Cmd::Sessions(args) => block_on(sessions::run(args)),
        Cmd::Host(args) => block_on(host::run(args)),
        Cmd::Join(args) => block_on(join::run(args)),
        Cmd::Doctor(args) => block_on(doctor::run(args)),
        Cmd::Send { files, args } => block_on(pair::run_with_files(
            pair::PairCmd::Offer(args),
            pair::FileTransfer {
                send: files,
                receive: None,
            },
        )),
        Cmd::Receive { code, dir, args } => block_on(pair::run_with_files(
            pair::PairCmd::Answer { code, args },
            pair::FileTransfer {
                send: Vec::new(),
                receive: Some(dir),
            },
        )),
    };
    std::process::exit(if ok { 0 } else { 1 });
}

/// Runs `fut` to its end, then leaves at once: a read of stdin still blocked in the runtime's
/// thread pool must not hold the exit (dropping the runtime would wait for it, so `send` /
/// `receive` stayed until Enter was pressed).
fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    let rt = runtime();
    let result = rt.block_on(fut);
    rt.shutdown_background();
    result
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
}
