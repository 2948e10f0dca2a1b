//! `titan-loadgen`: load generation and protocol torture tests for Titan.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    Ok(())
}
