//! The `titan` binary: every role (master, worker, client commands) behind one clap interface.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    Ok(())
}
