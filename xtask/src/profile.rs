//! `cargo xtask profile`: build `dynofa` and time sub-networks on this machine. Without arguments
//! it times the sub-networks of `luts/xavier-nx.json` on the CPU engine and writes
//! `luts/host-cpu.json` (or with `--check` verifies that file still lists them); `--backend cuda`
//! times them on the GPU into `luts/host-gpu.json`. With `--ops` it also times every op at their
//! resolutions on the CPU engine into OFA per-op tables in `luts/host-cpu-ops/` and reports how
//! well the per-op sums predict the measured sub-networks.
//!
//! With `--remote USER@BOARD` it times them on a board where `cargo xtask flash` installed dynofa
//! instead: it copies the sub-network list there, runs `dynofa profile` over ssh, which leaves
//! `luts/host-cpu.json` (or `host-gpu.json`) beside the board's binary (where `dynofa run` looks),
//! and fetches that LUT back as `luts/<BOARD>-cpu.json` (or `-gpu.json`; with `--ops`, its per-op
//! tables as `luts/<BOARD>-cpu-ops/`). `--dry-run` prints the exact commands.

use anyhow::{Result, bail};

use crate::flash::{self, Board, Step, Tools, quote, remote_dir};
use crate::util::{cargo, root, run};

/// The sub-networks it times.
const SUBNETS: &str = "luts/xavier-nx.json";
/// The committed host per-op tables `--ops` writes.
const HOST_CPU_OPS: &str = "luts/host-cpu-ops";

/// Options of the profile task.
#[derive(clap::Args)]
pub struct Args {
    /// Backend to time: cpu, or cuda (the GPU; its LUT is luts/host-gpu.json).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub backend: String,
    /// The sub-networks to time (a LUT or a JSON list of OFA configs).
    #[arg(long, default_value = SUBNETS)]
    pub subnets: String,
    /// The LUT to write (default: luts/host-cpu.json, or host-gpu.json with --backend cuda; with
    /// --remote, luts/BOARD-cpu.json or BOARD-gpu.json).
    #[arg(long)]
    pub out: Option<String>,
    /// Also time every op into OFA per-op tables (luts/host-cpu-ops/) and compare their sums with
    /// the measured sub-networks.
    #[arg(long)]
    pub ops: bool,
    /// Check that the LUT lists the sub-networks of --subnets (and with --ops, that the tables have
    /// every op of their resolutions) instead of measuring.
    #[arg(long, conflicts_with = "remote")]
    pub check: bool,
    /// Time them on this board (USER@BOARD or a Host from ~/.ssh/config), where `cargo xtask flash`
    /// installed dynofa, and fetch the LUT back.
    #[arg(long, value_name = "USER@BOARD")]
    pub remote: Option<String>,
    /// The folder on the board that `cargo xtask flash --dir` installed into.
    #[arg(long, default_value = "dynofa", requires = "remote")]
    pub dir: String,
    /// An ssh option as `-o` takes it, for ssh and scp (repeatable): `--ssh-option Port=2222`.
    #[arg(long = "ssh-option", requires = "remote")]
    pub ssh_options: Vec<String>,
    /// Print the commands for the board instead of running them.
    #[arg(long, requires = "remote")]
    pub dry_run: bool,
    /// More arguments for `dynofa profile` (after `--`), e.g. `-- --reps 100 --threads 1`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

impl Args {
    /// The unit the backend runs on, as LUT file names say it.
    fn unit(&self) -> &'static str {
        if self.backend == "cuda" { "gpu" } else { "cpu" }
    }

    /// The host LUT that `dynofa run` looks for beside its binary or in the workspace.
    fn host_lut(&self) -> String {
        format!("luts/host-{}.json", self.unit())
    }
}

pub fn run_task(args: Args) -> Result<()> {
    if args.remote.is_some() {
        let tools = Tools { ssh: "ssh".into(), scp: "scp".into(), rsync: None };
        let steps = remote_plan(&args, &tools)?;
        if args.dry_run {
            for step in &steps {
                println!("# {}\n{}", step.what, step.line());
            }
            return Ok(());
        }
        return flash::execute(&steps);
    }
    let root = root();
    let mut cmd = cargo();
    let note = if args.ops { "cargo xtask profile --ops" } else { "cargo xtask profile" };
    cmd.args(["run", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa", "--", "profile"])
        .args(["--backend", &args.backend, "--note", note])
        .arg("--subnets")
        .arg(root.join(&args.subnets))
        .arg("--out")
        .arg(root.join(args.out.clone().unwrap_or_else(|| args.host_lut())));
    if args.ops {
        cmd.arg("--ops").arg(root.join(HOST_CPU_OPS));
    }
    if args.check {
        cmd.arg("--check");
    }
    run(cmd.args(args.args))
}

/// The steps that profile on the board and fetch the LUT.
pub fn remote_plan(args: &Args, tools: &Tools) -> Result<Vec<Step>> {
    let Some(host) = args.remote.as_deref() else { bail!("--remote USER@BOARD is required") };
    let board = Board::new("--remote", host, &args.ssh_options, tools)?;
    let dir = remote_dir(&args.dir)?;
    let subnets = root().join(&args.subnets);
    let Some(name) = subnets.file_name().and_then(|n| n.to_str()) else {
        bail!("--subnets {}: not a file name", args.subnets);
    };
    // The board's name as a file name: what follows USER@, unsafe characters as '-'.
    let short = host.rsplit('@').next().unwrap_or(host);
    let short: String =
        short.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    let out = args.out.clone().unwrap_or_else(|| format!("luts/{short}-{}.json", args.unit()));
    let host_lut = args.host_lut();
    let ops = if args.ops { " --ops" } else { "" };
    let mut profile = vec![
        "./dynofa".to_owned(),
        "profile".into(),
        "--backend".into(),
        args.backend.clone(),
        "--note".into(),
        format!("cargo xtask profile{ops} --remote {host}"),
        "--subnets".into(),
        format!("luts/{name}"),
        "--out".into(),
        host_lut.clone(),
    ];
    if args.ops {
        profile.extend(["--ops".into(), HOST_CPU_OPS.into()]);
    }
    profile.extend(args.args.iter().cloned());
    let profile: Vec<String> = profile.iter().map(|a| quote(a)).collect();
    let mut steps = vec![
        Step {
            what: "make the LUT folder on the board".into(),
            argv: board.ssh(false, format!("mkdir -p {dir}/luts")),
        },
        Step {
            what: "copy the sub-networks to the board".into(),
            argv: board.scp([subnets.display().to_string()], format!("{host}:{dir}/luts/")),
        },
        Step {
            what: format!("time them on the board (its dynofa run then finds {host_lut})"),
            argv: board.ssh(false, format!("cd {dir} && {}", profile.join(" "))),
        },
        Step {
            what: format!("fetch the LUT as {out}"),
            argv: board.scp([format!("{host}:{dir}/{host_lut}")], root().join(&out).display().to_string()),
        },
    ];
    if args.ops {
        let local = root().join(format!("luts/{short}-cpu-ops"));
        steps.extend([
            Step {
                what: "make the folder for the per-op tables".into(),
                argv: vec!["mkdir".into(), "-p".into(), local.display().to_string()],
            },
            Step {
                what: format!("fetch the per-op tables into luts/{short}-cpu-ops/"),
                // The board's shell expands the pattern.
                argv: board.scp([format!("{host}:{dir}/{HOST_CPU_OPS}/*.yaml")], format!("{}/", local.display())),
            },
        ]);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        crate::util::parse_args(&[&["profile"][..], extra].concat())
    }

    fn args(extra: &[&str]) -> Args {
        parse(extra).unwrap()
    }

    fn tools() -> Tools {
        Tools { ssh: "ssh".into(), scp: "scp".into(), rsync: None }
    }

    #[test]
    fn remote_dry_run_prints_exact_commands() {
        let steps = remote_plan(&args(&["--remote", "nvidia@xavier", "--", "--reps", "20"]), &tools()).unwrap();
        let root = root();
        let lines: Vec<String> = steps.iter().map(Step::line).collect();
        assert_eq!(
            lines,
            [
                "ssh nvidia@xavier 'mkdir -p dynofa/luts'".to_owned(),
                format!("scp -p {} nvidia@xavier:dynofa/luts/", root.join("luts/xavier-nx.json").display()),
                "ssh nvidia@xavier 'cd dynofa && ./dynofa profile --backend cpu --note '\\''cargo xtask profile --remote nvidia@xavier'\\'' --subnets luts/xavier-nx.json --out luts/host-cpu.json --reps 20'"
                    .to_owned(),
                format!("scp -p nvidia@xavier:dynofa/luts/host-cpu.json {}", root.join("luts/xavier-cpu.json").display()),
            ]
        );
    }

    #[test]
    fn remote_ops_fetch_the_per_op_tables() {
        let steps = remote_plan(&args(&["--remote", "nvidia@xavier", "--ops"]), &tools()).unwrap();
        let root = root();
        let local = root.join("luts/xavier-cpu-ops");
        assert!(steps[2].line().contains(
            "--note '\\''cargo xtask profile --ops --remote nvidia@xavier'\\'' --subnets luts/xavier-nx.json --out luts/host-cpu.json --ops luts/host-cpu-ops'"
        ), "{}", steps[2].line());
        let lines: Vec<String> = steps[4..].iter().map(Step::line).collect();
        assert_eq!(
            lines,
            [
                format!("mkdir -p {}", local.display()),
                format!("scp -p 'nvidia@xavier:dynofa/luts/host-cpu-ops/*.yaml' {}/", local.display()),
            ]
        );
    }

    #[test]
    fn remote_options_reach_ssh_and_scp_and_bad_names_are_refused() {
        let a = args(&["--remote", "jet", "--dir", "/opt/d", "--ssh-option", "Port=2222", "--out", "luts/j.json"]);
        let steps = remote_plan(&a, &tools()).unwrap();
        assert_eq!(steps[0].argv, ["ssh", "-o", "Port=2222", "jet", "mkdir -p /opt/d/luts"]);
        assert_eq!(steps[3].argv[..4], ["scp", "-p", "-o", "Port=2222"]);
        assert_eq!(steps[3].argv[4], "jet:/opt/d/luts/host-cpu.json");
        assert!(steps[3].argv[5].ends_with("luts/j.json"));
        for bad in [&["--remote=-oProxyCommand=x"][..], &["--remote", "b", "--dir", "a b"]] {
            assert!(remote_plan(&args(bad), &tools()).is_err(), "{bad:?}");
        }
        // Options for the board only make sense with --remote; --check is local.
        assert!(parse(&["--dry-run"]).is_err() && parse(&["--remote", "b", "--check"]).is_err());
        assert!(parse(&["--backend", "npu"]).is_err());
    }

    #[test]
    fn the_gpu_gets_its_own_host_lut_and_board_lut() {
        let steps = remote_plan(&args(&["--remote", "nvidia@xavier", "--backend", "cuda"]), &tools()).unwrap();
        assert!(
            steps[2].line().contains("profile --backend cuda") && steps[2].line().contains("--out luts/host-gpu.json"),
            "{}",
            steps[2].line()
        );
        assert_eq!(steps[3].argv[2], "nvidia@xavier:dynofa/luts/host-gpu.json");
        assert!(steps[3].argv[3].ends_with("luts/xavier-gpu.json"), "{:?}", steps[3].argv);
    }
}
