//! `cargo xtask gpu-check [--out gpu-check]`: stage the GPU check for a machine with an NVIDIA GPU,
//! torch, and no Rust or network (see docs/gpu.md).
//!
//! Here: release builds for x86_64 (glibc 2.31, through cargo-zigbuild) of `dynofa`, the GPU goldens test (`hal-jetson/tests/gpu.rs`),
//! the GPU bench (`hal-jetson/benches/gpu.rs`) and the HAL conformance suite on the Linux platform
//! (`firmware-tests/tests/linux_conformance.rs`), debug info stripped, plus the PyPI `ofa` wheel
//! (pure Python; the GPU machine may not have it) into one small folder. There, from the repository
//! root: `python3 scripts/gpu/check.py <folder>` checks correctness, times dynofa and PyTorch and
//! prints the table of ratios last.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::build_jetson::{elf_facts, ensure_tools};
use crate::util::{cargo, root, run};

/// x86_64 with glibc 2.31 (Ubuntu 20.04) or newer.
const TARGET: &str = "x86_64-unknown-linux-gnu.2.31";
/// The `ofa` release the goldens were made with (kernels/goldens/README.md).
const OFA: &str = "ofa==0.1.0.post202307202001";
/// What the device tool carries (64 MiB in all, with the repository's own files).
const LIMIT: u64 = 48 << 20;

/// Options of `cargo xtask gpu-check`.
#[derive(clap::Args)]
pub struct Args {
    /// The folder to stage (relative to the repository root; `gpu-check/` is git-ignored).
    #[arg(long, default_value = "gpu-check")]
    out: PathBuf,
}

/// Build `cmd` (a cargo build, test or bench with `--no-run`) and return the executable of target `name`.
fn executable(cmd: &mut Command, name: &str) -> Result<PathBuf> {
    cmd.args(["--message-format", "json-render-diagnostics"]).stdout(Stdio::piped());
    let line = format!("{cmd:?}");
    eprintln!("$ {line}");
    let out = cmd.spawn().and_then(|c| c.wait_with_output()).with_context(|| format!("could not start {line}"))?;
    if !out.status.success() {
        bail!("{line} failed with {}", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("{line} reported no executable for `{name}`"))
}

/// Copy `from` to `to` without debug info (`strip`, when present, else as is).
fn stage(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    let stripped = Command::new("strip").arg("--strip-debug").arg(to).status().is_ok_and(|s| s.success());
    if !stripped {
        eprintln!("note: `strip` is missing or failed: {} keeps its debug info", to.display());
    }
    Ok(())
}

pub fn run_task(args: Args) -> Result<()> {
    let out = root().join(&args.out);
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot empty {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    ensure_tools()?;
    // Linked against an old glibc (cargo-zigbuild) so that the GPU machine's distribution matters little.
    let p = ["-p", "dynofa-hal-jetson", "--target", TARGET];
    let dynofa = executable(cargo().args(["zigbuild", "--release", "--bin", "dynofa"]).args(p), "dynofa")?;
    let zig_test = || {
        let mut c = Command::new("cargo-zigbuild");
        c.current_dir(root()).args(["test", "--release", "--no-run"]);
        c
    };
    let test = executable(zig_test().args(["--test", "gpu"]).args(p), "gpu")?;
    let bench = executable(zig_test().args(["--bench", "gpu"]).args(p), "gpu")?;
    let suite = ["--test", "linux_conformance", "-p", "dynofa-firmware-tests", "--target", TARGET];
    let suite = executable(zig_test().args(suite), "linux_conformance")?;
    for (from, name) in [(&dynofa, "dynofa"), (&test, "gpu-test"), (&bench, "gpu-bench"), (&suite, "conformance")] {
        stage(from, &out.join(name))?;
    }

    let venv = root().join("scripts/ref/.venv/bin/python");
    let python = if venv.exists() { venv } else { PathBuf::from("python3") };
    run(Command::new(&python).args(["-m", "pip", "download", "--no-deps", "-q", "-d"]).arg(&out).arg(OFA))
        .context("cannot fetch the `ofa` wheel (pip download needs PyPI)")?;

    let facts = elf_facts(&std::fs::read(out.join("dynofa"))?)?;
    let mut total = 0;
    for entry in std::fs::read_dir(&out)? {
        total += entry?.metadata()?.len();
    }
    eprintln!(
        "{}: {:.1} MiB staged; the binaries need {} or newer",
        out.display(),
        total as f64 / (1 << 20) as f64,
        facts.newest_glibc.map_or("(none)".into(), |v| v.to_string())
    );
    if total > LIMIT {
        bail!(
            "{} holds {total} bytes: over the {LIMIT} the device tool can carry beside the repository",
            out.display()
        );
    }
    eprintln!("on the GPU machine, from the repository root: python3 scripts/gpu/check.py {}", args.out.display());
    Ok(())
}
