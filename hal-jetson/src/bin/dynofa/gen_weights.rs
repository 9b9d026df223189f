//! `dynofa gen-weights`: write the seeded default supernet weights in OFA's state-dict layout.

use std::path::PathBuf;

use anyhow::{Result, bail};
use dynofa_core::Supernet;
use dynofa_kernels::seeded::{DEFAULT_SEED, write_seeded};

/// Options of `dynofa gen-weights`.
#[derive(clap::Args)]
pub struct Args {
    /// Width multiplier of the supernet: 1.0 or 1.2.
    #[arg(long, default_value_t = 1.2)]
    width: f64,
    /// Seed (the built-in default weights use the default seed).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let Some(net) = [Supernet::W1_0, Supernet::W1_2].into_iter().find(|n| n.width_mult == args.width) else {
        bail!("--width {}: OFA MobileNetV3 has widths 1.0 and 1.2", args.width);
    };
    write_seeded(net, args.seed, &args.out)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", args.out.display()))?;
    eprintln!(
        "wrote seeded OFA MobileNetV3 w{:.1} weights (seed {:#x}) to {}",
        net.width_mult,
        args.seed,
        args.out.display()
    );
    Ok(())
}
