//! `cargo xtask bench cpu`: batch-1 latency of the CPU engine next to ONNX Runtime and PyTorch on
//! the same sub-networks and thread count, each in its own process, plus the `activate()` time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, root, run};

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// What to benchmark.
    #[arg(value_enum)]
    target: Target,
    /// Threads for every engine.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed runs per measurement (after a warm-up).
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Supernet weights (OFA state dict, safetensors); default: the seeded w1.2 weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Rounds over all engines; each figure is the median of its rounds' medians, so that load
    /// that comes and goes on the machine hits every engine alike.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Peers to run (of ort, torch, torch-inplace).
    #[arg(long, value_delimiter = ',', default_value = "ort,torch,torch-inplace")]
    peers: Vec<String>,
}

/// Benchmark targets.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Target {
    /// The CPU engine against ONNX Runtime and PyTorch.
    Cpu,
}

/// The sub-networks of the issue: (name, ks, e, d, r), w1.2.
const SUBNETS: [(&str, u8, u8, u8, usize); 3] = [("max", 7, 6, 4, 224), ("mid", 5, 4, 3, 192), ("min", 3, 3, 2, 160)];
/// Peer engines of `scripts/ref/ofa_ref.py bench`, with their column titles.
const PEERS: [(&str, &str); 3] =
    [("ort", "ONNX Runtime"), ("torch", "PyTorch eager"), ("torch-inplace", "PyTorch in-place")];

pub fn run_task(args: Args) -> Result<()> {
    let Target::Cpu = args.target;
    run(cargo().args(["build", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let dynofa = target.join("release/dynofa");
    let tmp = target.join("bench-cpu");
    std::fs::create_dir_all(&tmp)?;
    let weights = match &args.weights {
        Some(w) => w.clone(),
        None => {
            let w = tmp.join("w12.safetensors");
            run(Command::new(&dynofa).args(["gen-weights", "--width", "1.2", "--out"]).arg(&w))?;
            w
        }
    };
    let python = root().join("scripts/ref/.venv/bin/python");
    let have_peers = python.exists();
    if !have_peers {
        eprintln!("no {} (scripts/ref/setup-venv.sh): measuring dynofa only", python.display());
    }
    let threads = args.threads.to_string();
    let reps = args.reps.to_string();
    let mut runs: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); 1 + PEERS.len()]; SUBNETS.len()];
    for round in 0..args.rounds {
        eprintln!("round {} of {}", round + 1, args.rounds);
        for (i, (name, k, e, d, r)) in SUBNETS.into_iter().enumerate() {
            let config = tmp.join(format!("{name}.json"));
            let list = |v: u8, n: usize| format!("[{}]", vec![v.to_string(); n].join(","));
            std::fs::write(
                &config,
                format!(r#"{{"ks":{},"e":{},"d":{},"r":{r}}}"#, list(k, 20), list(e, 20), list(d, 5)),
            )?;
            let input = tmp.join(format!("input{r}.safetensors"));
            write_input(&input, r)?;
            let mut cmd = Command::new(&dynofa);
            cmd.args(["infer", "--weights"]).arg(&weights).arg("--config").arg(&config).arg("--input").arg(&input);
            cmd.arg("--output").arg(tmp.join("logits.safetensors"));
            cmd.args(["--repeat", &reps, "--threads", &threads]);
            runs[i][0].push(median(&mut cmd, "median_ms=")?);
            let chosen = |p: &&(&str, &str)| have_peers && args.peers.iter().any(|c| c == p.0);
            for (j, (engine, _)) in PEERS.iter().enumerate().filter(|(_, p)| chosen(p)) {
                let mut cmd = Command::new(&python);
                cmd.arg(root().join("scripts/ref/ofa_ref.py")).args(["bench", "--weights"]).arg(&weights);
                cmd.args(["--threads", &threads, "--which", name, "--engine", engine, "--reps", &reps]);
                runs[i][1 + j].push(median(&mut cmd, "median_ms=")?);
            }
        }
    }
    let mid = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rows: Vec<_> = SUBNETS
        .iter()
        .zip(&runs)
        .map(|((name, _, _, _, r), runs)| {
            let peers: Vec<f64> = runs[1..].iter().filter(|v| !v.is_empty()).map(|v| mid(v)).collect();
            (name, r, mid(&runs[0]), peers)
        })
        .collect();
    let activate = median(
        cargo().args(["bench", "-p", "dynofa-kernels", "--bench", "engine"]).env("DYNOFA_BENCH_ACTIVATE_ONLY", "1"),
        "median_activate_us=",
    )?;
    let switch = if have_peers {
        let mut cmd = Command::new(&python);
        cmd.arg(root().join("scripts/ref/ofa_ref.py")).args(["bench", "--weights"]).arg(&weights);
        cmd.args(["--threads", &threads, "--which", "max", "--engine", "torch-switch", "--reps", &reps]);
        Some(median(&mut cmd, "median_us=")?)
    } else {
        None
    };

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    println!(
        "\nw1.2, batch 1, {threads} threads, median of {} rounds of the median of {reps} runs, {cpu}, load average after: {load}\n",
        args.rounds
    );
    let titles: Vec<&str> =
        PEERS.iter().filter(|p| have_peers && args.peers.iter().any(|c| c == p.0)).map(|p| p.1).collect();
    println!(
        "| sub-network | dynofa ms | {} | dynofa / ONNX Runtime |",
        titles.iter().map(|t| format!("{t} ms")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---|{}---|", "---|".repeat(titles.len()));
    for (name, r, ours, peers) in rows {
        let ort = peers.first().filter(|_| titles.first() == Some(&PEERS[0].1));
        let ratio = ort.map_or("-".into(), |ort| format!("{:.2}x", ours / ort));
        let cols: Vec<String> = peers.iter().map(|p| format!("{p:.2}")).collect();
        println!("| {name} (r{r}) | {ours:.2} | {} | {ratio} |", cols.join(" | "));
    }
    println!(
        "\nactivate(): median {activate:.2} µs (dynofa); set_active_subnet: {}",
        switch.map_or("-".into(), |s| format!("median {s:.1} µs (PyTorch, in place)"))
    );
    Ok(())
}

/// Run `cmd` (in its own process) and read the value of the last stdout line starting with `key`.
fn median(cmd: &mut Command, key: &str) -> Result<f64> {
    let line = format!("{cmd:?}");
    eprintln!("$ {line}");
    let out = cmd.output().with_context(|| format!("could not start {line}"))?;
    if !out.status.success() {
        bail!("{line} failed with {}:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value =
        stdout.lines().rev().find_map(|l| l.strip_prefix(key)).with_context(|| format!("{line}: no `{key}` line"))?;
    let v: f64 = value.trim().parse().with_context(|| format!("{line}: `{key}{value}` is not a number"))?;
    eprintln!("  {key}{v}");
    Ok(v)
}

/// A safetensors file with tensor `input`, f32 [1, 3, r, r], values in [-2, 2).
fn write_input(path: &Path, r: usize) -> Result<()> {
    let n = 3 * r * r;
    let mut header = format!(r#"{{"input":{{"dtype":"F32","shape":[1,3,{r},{r}],"data_offsets":[0,{}]}}}}"#, n * 4);
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    // A fixed pseudo-random pattern: latency does not depend on the values.
    bytes.extend((0..n).flat_map(|i| (((i * 7919) % 4001) as f32 / 1000.0 - 2.0).to_le_bytes()));
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
