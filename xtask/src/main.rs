//! `cargo xtask <task>`: dynofa's developer tasks (matklad's cargo-xtask pattern).

mod ci;
mod search;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "dynofa developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: fmt, clippy, tests, bare-metal and aarch64 builds, aarch64 tests under qemu.
    Ci(ci::Args),
    /// Evolutionary search into a LUT (default: regenerate luts/xavier-nx.json; --check verifies it).
    Search(search::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Ci(args) => ci::run(args),
        Task::Search(args) => search::run_task(args),
    }
}
