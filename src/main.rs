//! The `titan` binary: every role (master, worker, client commands) behind one clap interface.

use clap::Parser;
use mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_t`; the Rust bindings do not
/// name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = titan::cli::Cli::parse();
    if matches!(cli.command, titan::cli::Command::Master(_)) {
        // The master allocates a snapshot's image and encoding (tens of MB) every few hundred
        // thousand records and frees them; returning those pages to the OS in between made
        // every snapshot fault them in again, zeroed (17-22% of the master's CPU under load).
        // It keeps them for reuse instead: NOOP with the log at capacity 16 went from a median
        // 74% to 81% of memory-only over 7 rounds, with the same RSS at the end (BENCHMARKS.md).
        // SAFETY: sets one integer option; mimalloc allows it at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
        // No transparent huge pages: the first touch of a huge page zeroes all 2 MiB of it, and
        // the allocator touches its fresh regions sparsely, so the master spent 10-18% of its
        // CPU under load zeroing memory it barely used (1.5% without). Where THP is "always"
        // or "madvise", this flag wins; a master that cannot set it just runs slower.
        if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
            eprintln!("warning: could not turn off transparent huge pages: {e}");
        }
    }
    match titan::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": ". Many errors already name their cause in their own
/// message; a cause whose text is already there is not repeated.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Logs go to stderr, filtered by `TITAN_LOG` (or `RUST_LOG`), `info` by default.
fn init_tracing() {
    let filter = std::env::var("TITAN_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
