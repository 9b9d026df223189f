//! `cargo xtask fuzz [--seconds N] [TARGET]`: bounded cargo-fuzz runs of every parser in `fuzz/`.
//!
//! Installs cargo-fuzz when it is missing, builds the targets, and runs each for its time with
//! libFuzzer; a crash, a leak or an input slower than the per-input timeout fails the task and
//! leaves the input in `fuzz/artifacts/<target>/` (make it a regression test where the parser
//! lives). Only a stable toolchain is needed: `RUSTC_BOOTSTRAP=1` lets it take the `-Z` flags
//! cargo-fuzz passes (the sanitizer and coverage instrumentation).

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, root, run};

/// Options of the fuzz task.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds each target runs (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Run only this target (default: every one).
    pub target: Option<String>,
}

/// Each target and the folders of repository files that seed it besides `fuzz/corpus/<target>`.
const TARGETS: [(&str, &[&str]); 5] = [
    ("lut_json", &["luts"]),
    ("config_json", &[]),
    ("weights_safetensors", &[]),
    ("op_table", &[]),
    ("scenario", &["hal-sim/scenarios"]),
];

/// The cargo-fuzz release this task installs when none is found.
const CARGO_FUZZ: &str = "0.13.2";

/// Seconds one input may take before libFuzzer reports it as a hang.
const INPUT_TIMEOUT_S: u64 = 10;

fn ensure_cargo_fuzz() -> Result<()> {
    let found = cargo().args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("cargo-fuzz not found; installing {CARGO_FUZZ} from crates.io");
        run(cargo().args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ]))?;
    }
    Ok(())
}

/// `cargo fuzz <args>` on the stable toolchain.
fn cargo_fuzz() -> std::process::Command {
    let mut cmd = cargo();
    cmd.arg("fuzz").env("RUSTC_BOOTSTRAP", "1");
    cmd
}

pub fn run_task(args: Args) -> Result<()> {
    let targets: Vec<_> = match &args.target {
        Some(name) => {
            let t = TARGETS.iter().find(|(n, _)| n == name).with_context(|| {
                let names: Vec<_> = TARGETS.iter().map(|(n, _)| *n).collect();
                format!("no fuzz target {name:?}; the targets are {}", names.join(", "))
            })?;
            vec![*t]
        }
        None => TARGETS.to_vec(),
    };
    if args.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    ensure_cargo_fuzz()?;
    run(cargo_fuzz().arg("build"))?;
    let root = root();
    let mut crashed = Vec::new();
    for (name, seeds) in targets {
        // New inputs go to a working corpus under fuzz/target (not committed); the committed seeds
        // and the repository files only seed it.
        let work = root.join("fuzz/target/corpus").join(name);
        std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
        let mut cmd = cargo_fuzz();
        cmd.args(["run", name]).arg(&work).arg(Path::new("fuzz/corpus").join(name));
        cmd.args(seeds.iter().map(|s| root.join(s)));
        cmd.args(["--", &format!("-max_total_time={}", args.seconds), &format!("-timeout={INPUT_TIMEOUT_S}")]);
        if let Err(e) = run(&mut cmd) {
            eprintln!("fuzz target {name} failed: {e:#}; its input is in fuzz/artifacts/{name}/");
            crashed.push(name);
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzz targets found crashes: {}; reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <input>` \
             and add a regression test where the parser lives",
            crashed.join(", ")
        );
    }
    Ok(())
}
