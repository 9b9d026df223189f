//! `cargo xtask ci`: every check CI runs, collecting failures before exiting non-zero.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::util::{cargo, run as sh};

/// Options of the CI task.
#[derive(clap::Args)]
pub struct Args {
    /// Skip the aarch64 cross build and qemu tests (they need gcc-aarch64-linux-gnu and qemu-user).
    #[arg(long)]
    pub no_cross: bool,
}

/// Crates whose tests also run on aarch64 under qemu (pure logic; heavy engine tests run natively).
const QEMU_TEST_CRATES: &[&str] = &["dynofa-core", "dynofa-hal-sim"];

/// The CPU engine's tests that also run under qemu: kernels against references and the goldens
/// (about 40 s there); the 1,000-switch allocation test stays native.
const QEMU_KERNEL_TESTS: &[&str] = &["--lib", "--test", "goldens"];

/// Seconds each fuzz target runs in CI: five targets, about five minutes in all.
const FUZZ_SECONDS: u64 = 60;

/// A named check.
type Step = (&'static str, Box<dyn Fn() -> Result<()>>);

fn run_all(steps: &[Step]) -> Result<()> {
    let mut failed = Vec::new();
    for (name, step) in steps {
        let start = Instant::now();
        eprintln!("==> {name}");
        match step() {
            Ok(()) => eprintln!("<== {name}: ok ({:.0} s)", start.elapsed().as_secs_f64()),
            Err(e) => {
                eprintln!("<== {name}: FAILED: {e:#}");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join(", "));
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let mut steps: Vec<Step> = vec![
        ("fmt", Box::new(|| sh(cargo().args(["fmt", "--all", "--check"])))),
        ("clippy", Box::new(|| sh(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])))),
        (
            "clippy (core, defmt)",
            Box::new(|| {
                sh(cargo().args([
                    "clippy",
                    "-p",
                    "dynofa-core",
                    "--all-targets",
                    "--features",
                    "defmt",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        (
            // Broken intra-doc links and stray HTML in rustdoc are mistakes a reader meets first.
            "docs",
            Box::new(|| sh(cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"))),
        ),
        ("tests", Box::new(|| sh(cargo().args(["test", "--workspace"])))),
        ("tests (core, defmt)", Box::new(|| sh(cargo().args(["test", "-p", "dynofa-core", "--features", "defmt"])))),
        (
            // The committed figures follow the code that draws them (policies, search, sim).
            "figures up to date",
            Box::new(|| {
                crate::figures::run_task(crate::figures::Args {
                    lut: None,
                    out: crate::figures::FIGURES.into(),
                    platform: "sim".into(),
                    check: true,
                    args: Vec::new(),
                })
            }),
        ),
        (
            "fuzz (every parser, 60 s each)",
            Box::new(|| crate::fuzz::run_task(crate::fuzz::Args { seconds: FUZZ_SECONDS, target: None })),
        ),
        (
            "bare metal (thumbv7em, no alloc)",
            Box::new(|| {
                let t = ["--target", "thumbv7em-none-eabihf"];
                sh(cargo().args(["build", "-p", "dynofa-core"]).args(t))?;
                sh(cargo().args(["build", "-p", "dynofa-core", "--features", "defmt"]).args(t))?;
                sh(cargo().args(["build", "-p", "dynofa-bare-metal", "--release"]).args(t))
            }),
        ),
    ];
    if !args.no_cross {
        steps.push((
            "aarch64 cross build",
            Box::new(|| {
                sh(cargo().args(["build", "--workspace", "--all-targets", "--target", "aarch64-unknown-linux-gnu"]))
            }),
        ));
        steps.push((
            "aarch64 tests under qemu",
            Box::new(|| {
                let mut cmd = cargo();
                cmd.args(["test", "--target", "aarch64-unknown-linux-gnu"]);
                for c in QEMU_TEST_CRATES {
                    cmd.args(["-p", c]);
                }
                sh(&mut cmd)?;
                // The NEON kernels against their references, and the engine on every golden.
                sh(cargo()
                    .args(["test", "--target", "aarch64-unknown-linux-gnu", "-p", "dynofa-kernels"])
                    .args(QEMU_KERNEL_TESTS))
            }),
        ));
    }
    run_all(&steps)
}
