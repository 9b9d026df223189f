//! `cargo xtask flash --host USER@BOARD`: install the runtime on a board over ssh (not the board's OS
//! image): the binary `build-jetson` made, the LUTs (not the `host-*` ones measured on this machine) and any
//! weights; with `--udev` the rule that lets group `dynofa` set clocks without root, with `--service` also a
//! systemd unit that starts dynofa at boot.
//!
//! Everything goes through the user's own `ssh`/`scp`/`rsync`, so their `~/.ssh/config`, keys and agent
//! apply and nothing secret is in this repository. `--dry-run` prints the exact commands instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::build_jetson::{self, JetPack};
use crate::util::{root, run as sh};

/// Options of `flash`.
#[derive(clap::Args)]
pub struct Args {
    /// The board as ssh knows it: USER@HOST or a Host from ~/.ssh/config.
    #[arg(long)]
    pub host: String,
    /// Folder on the board, relative to the user's home unless absolute.
    #[arg(long, default_value = "dynofa")]
    pub dir: String,
    /// The board's JetPack: picks the binary `cargo xtask build-jetson --jetpack N` made.
    #[arg(long, value_enum, default_value = "5")]
    pub jetpack: JetPack,
    /// Install this binary instead of build-jetson's (it is checked the same way).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// A LUT to copy (repeatable; default: luts/*.json but the host-*.json measured on this machine).
    #[arg(long = "lut")]
    pub luts: Vec<PathBuf>,
    /// A weights file to copy (repeatable).
    #[arg(long = "weights")]
    pub weights: Vec<PathBuf>,
    /// Install the udev rule that lets group dynofa write the DVFS files (asks for sudo on the board).
    #[arg(long)]
    pub udev: bool,
    /// Install the udev rule and a systemd unit that runs `dynofa <service-args>` at boot.
    #[arg(long)]
    pub service: bool,
    /// The arguments of dynofa in the systemd unit.
    #[arg(long, default_value = "run")]
    pub service_args: String,
    /// An ssh option as `-o` takes it, for ssh and the copies (repeatable): `--ssh-option Port=2222`.
    #[arg(long = "ssh-option")]
    pub ssh_options: Vec<String>,
    /// Copy with scp even where rsync is installed.
    #[arg(long)]
    pub scp: bool,
    /// Print the commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// The programs the steps call (the tests put stand-ins here).
#[derive(Debug, Clone)]
pub struct Tools {
    /// ssh.
    pub ssh: String,
    /// scp.
    pub scp: String,
    /// rsync, where it is used.
    pub rsync: Option<String>,
}

/// One command of the installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it does, for the dry run.
    pub what: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
}

impl Step {
    /// The command as a line to paste into a POSIX shell.
    pub fn line(&self) -> String {
        self.argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        cmd
    }
}

/// Quote `s` for a POSIX shell where it needs it.
pub fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !s.is_empty() && s.chars().all(plain) { s.to_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// What gets copied where.
#[derive(Debug, Clone)]
pub struct Files {
    /// The dynofa binary.
    pub binary: PathBuf,
    /// LUT JSON files.
    pub luts: Vec<PathBuf>,
    /// Weights files.
    pub weights: Vec<PathBuf>,
    /// The templates in deploy/ (copied with --udev or --service).
    pub deploy: Vec<PathBuf>,
}

const UDEV_RULE: &str = "99-dynofa-dvfs.rules";
const UNIT: &str = "dynofa.service";

/// The folder on the board as ssh and scp take it: `~/x` is `x` (both start in the home folder); only
/// characters that no shell or scp treats specially, so that it needs no quoting on either side.
pub fn remote_dir(dir: &str) -> Result<String> {
    let dir = dir.strip_prefix("~/").unwrap_or(dir).trim_end_matches('/');
    let ok = |c: char| c.is_ascii_alphanumeric() || "._/-+@".contains(c);
    if dir.is_empty() || dir.starts_with('-') || !dir.chars().all(ok) {
        bail!("--dir {dir:?}: use letters, digits and ._/-+@ only (a folder relative to the home folder, or absolute)");
    }
    Ok(dir.to_owned())
}

/// A board as ssh knows it, with the user's ssh options: the commands that reach it.
#[derive(Debug)]
pub struct Board<'a> {
    /// USER@HOST or a Host from ~/.ssh/config.
    pub host: &'a str,
    opts: Vec<String>,
    tools: &'a Tools,
}

impl<'a> Board<'a> {
    /// `host` (named `option` in errors) with `ssh_options` as `-o` takes them.
    pub fn new(option: &str, host: &'a str, ssh_options: &[String], tools: &'a Tools) -> Result<Self> {
        if host.is_empty() || host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c == ':') {
            bail!("{option} {host:?}: give USER@BOARD or a Host from ~/.ssh/config");
        }
        let opts = ssh_options.iter().flat_map(|o| ["-o".to_owned(), o.clone()]).collect();
        Ok(Board { host, opts, tools })
    }

    /// ssh running `remote` on the board (`tty`: with a terminal, for sudo's password).
    pub fn ssh(&self, tty: bool, remote: String) -> Vec<String> {
        let mut argv = vec![self.tools.ssh.clone()];
        if tty {
            argv.push("-t".into());
        }
        argv.extend(self.opts.iter().cloned());
        argv.extend([self.host.to_owned(), remote]);
        argv
    }

    /// scp copying `from` to `to` (either side may be `HOST:path`), keeping times and modes.
    pub fn scp(&self, from: impl IntoIterator<Item = String>, to: String) -> Vec<String> {
        let mut argv = [vec![self.tools.scp.clone(), "-p".into()], self.opts.clone()].concat();
        argv.extend(from);
        argv.push(to);
        argv
    }
}

/// The steps that install `files` on the board.
pub fn plan(args: &Args, files: &Files, tools: &Tools) -> Result<Vec<Step>> {
    let board = Board::new("--host", &args.host, &args.ssh_options, tools)?;
    let host = &args.host;
    if args.service_args.chars().any(|c| "'|&\\;\n`$".contains(c)) {
        bail!(
            "--service-args {:?}: plain arguments only (no quotes, |, &, \\, ;, `, $ or newlines)",
            args.service_args
        );
    }
    let dir = remote_dir(&args.dir)?;
    // With a terminal where sudo on the board may ask for a password.
    let ssh = |tty: bool, remote: String| board.ssh(tty, remote);
    let install_deploy = args.udev || args.service;
    let mut folders = vec![dir.clone(), format!("{dir}/luts"), format!("{dir}/weights")];
    if install_deploy {
        folders.push(format!("{dir}/deploy"));
    }
    let mut steps = vec![Step {
        what: "make the folders on the board".into(),
        argv: ssh(false, format!("mkdir -p {}", folders.join(" "))),
    }];

    let groups = [
        ("the binary", vec![files.binary.clone()], dir.clone()),
        ("the LUTs", files.luts.clone(), format!("{dir}/luts")),
        ("the weights", files.weights.clone(), format!("{dir}/weights")),
        (
            "the udev rule and unit templates",
            if install_deploy { files.deploy.clone() } else { Vec::new() },
            format!("{dir}/deploy"),
        ),
    ];
    for (what, paths, to) in groups {
        if paths.is_empty() {
            continue;
        }
        let paths = paths.iter().map(|p| p.display().to_string());
        let dest = format!("{host}:{to}/");
        let argv = match &tools.rsync {
            Some(rsync) => {
                let remote_shell = std::iter::once(tools.ssh.as_str())
                    .chain(board.opts.iter().map(String::as_str))
                    .map(quote)
                    .collect::<Vec<_>>();
                let mut argv = vec![rsync.clone(), "-az".into(), "-e".into(), remote_shell.join(" ")];
                argv.extend(paths);
                argv.push(dest);
                argv
            }
            None => board.scp(paths, dest),
        };
        steps.push(Step { what: format!("copy {what}"), argv });
    }

    if install_deploy {
        let mut script = vec![
            format!("cd {dir}"),
            "sudo groupadd -f dynofa".into(),
            "sudo usermod -aG dynofa \"$(id -un)\"".into(),
            format!("sudo install -m 0644 deploy/{UDEV_RULE} /etc/udev/rules.d/{UDEV_RULE}"),
            "sudo udevadm control --reload-rules".into(),
            "sudo udevadm trigger --action=add --subsystem-match=devfreq --subsystem-match=cpu".into(),
        ];
        if args.service {
            script.extend([
                format!(
                    "sed -e \"s|@DIR@|$(pwd)|g\" -e \"s|@USER@|$(id -un)|g\" -e 's|@ARGS@|{}|g' deploy/{UNIT} | sudo tee /etc/systemd/system/{UNIT} >/dev/null",
                    args.service_args
                ),
                "sudo systemctl daemon-reload".into(),
                format!("sudo systemctl enable --now {UNIT}"),
            ]);
        }
        let what = if args.service { "install the udev rule and the systemd unit" } else { "install the udev rule" };
        steps.push(Step { what: what.into(), argv: ssh(true, script.join(" && ")) });
    }
    Ok(steps)
}

/// How to use what was installed.
fn usage(args: &Args) -> Result<String> {
    let dir = remote_dir(&args.dir)?;
    let mut s =
        format!("installed on {}:{dir}; run it with\n  ssh -t {} 'cd {dir} && ./dynofa run'\n", args.host, args.host);
    if args.service {
        s += &format!(
            "the service: ssh {} systemctl status {UNIT}; logs: ssh {} journalctl -u {UNIT} -f\n",
            args.host, args.host
        );
    }
    if args.udev || args.service {
        s += "log in again on the board for the dynofa group to apply to your shell\n";
    }
    Ok(s)
}

/// Run the steps in order, stopping at the first that fails.
pub fn execute(steps: &[Step]) -> Result<()> {
    steps.iter().try_for_each(|step| sh(&mut step.command()).with_context(|| format!("could not {}", step.what)))
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The LUTs to copy: those given, else the `*.json` of `dir` but for the `host-*` ones (measured on the
/// development machine, they would mislead the board's runtime); also the ones left out, to say so.
fn lut_files(given: &[PathBuf], dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    if !given.is_empty() {
        return (given.to_vec(), Vec::new());
    }
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    found.into_iter().partition(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("host-")))
}

pub fn run(args: Args) -> Result<()> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => build_jetson::output_path(&build_jetson::metadata()?.0, args.jetpack),
    };
    if binary.exists() {
        build_jetson::check_binary(&binary, args.jetpack)?;
    } else if args.dry_run {
        eprintln!(
            "note: {} does not exist yet; build it with `cargo xtask build-jetson --jetpack {}`",
            binary.display(),
            args.jetpack.number()
        );
    } else {
        bail!(
            "{} does not exist; build it with `cargo xtask build-jetson --jetpack {}`",
            binary.display(),
            args.jetpack.number()
        );
    }
    let (luts, skipped) = lut_files(&args.luts, &root().join("luts"));
    for lut in &skipped {
        eprintln!(
            "note: not copying {}: measured on this development machine, not the board (--lut copies it)",
            lut.display()
        );
    }
    let files = Files {
        binary,
        luts,
        weights: args.weights.clone(),
        deploy: [UDEV_RULE, UNIT].iter().map(|f| root().join("deploy").join(f)).collect(),
    };
    for f in files.luts.iter().chain(&files.weights).chain(&files.deploy) {
        if !f.is_file() {
            bail!("{} is not a file", f.display());
        }
    }
    if files.luts.is_empty() {
        eprintln!("note: no LUT given and none in luts/; dynofa uses its built-in LUT");
    }
    let tools = Tools {
        ssh: "ssh".into(),
        scp: "scp".into(),
        rsync: (!args.scp && installed("rsync")).then(|| "rsync".into()),
    };
    let steps = plan(&args, &files, &tools)?;
    if args.dry_run {
        for step in &steps {
            println!("# {}\n{}", step.what, step.line());
        }
        return Ok(());
    }
    execute(&steps)?;
    print!("{}", usage(&args)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn args(extra: &[&str]) -> Args {
        let argv: Vec<&str> = ["flash", "--host", "nvidia@xavier"].into_iter().chain(extra.iter().copied()).collect();
        crate::util::parse_args(&argv).unwrap()
    }

    fn files() -> Files {
        Files {
            binary: "target/jetson/jetpack5/dynofa".into(),
            luts: vec!["luts/xavier-nx.json".into()],
            weights: Vec::new(),
            deploy: vec!["deploy/99-dynofa-dvfs.rules".into(), "deploy/dynofa.service".into()],
        }
    }

    fn tools(rsync: bool) -> Tools {
        Tools { ssh: "ssh".into(), scp: "scp".into(), rsync: rsync.then(|| "rsync".into()) }
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::line).collect()
    }

    #[test]
    fn dry_run_with_scp_prints_exact_commands() {
        let steps = plan(&args(&["--dir", "~/apps/dynofa"]), &files(), &tools(false)).unwrap();
        assert_eq!(
            lines(&steps),
            [
                "ssh nvidia@xavier 'mkdir -p apps/dynofa apps/dynofa/luts apps/dynofa/weights'",
                "scp -p target/jetson/jetpack5/dynofa nvidia@xavier:apps/dynofa/",
                "scp -p luts/xavier-nx.json nvidia@xavier:apps/dynofa/luts/",
            ]
        );
    }

    #[test]
    fn rsync_carries_the_ssh_options() {
        let mut f = files();
        f.weights.push("ofa w1.2.safetensors".into());
        let steps = plan(
            &args(&["--ssh-option", "Port=2222", "--ssh-option", "IdentityFile=~/.ssh/jetson key"]),
            &f,
            &tools(true),
        )
        .unwrap();
        assert_eq!(
            steps[0].argv,
            [
                "ssh",
                "-o",
                "Port=2222",
                "-o",
                "IdentityFile=~/.ssh/jetson key",
                "nvidia@xavier",
                "mkdir -p dynofa dynofa/luts dynofa/weights"
            ]
        );
        assert_eq!(
            steps[3].line(),
            r#"rsync -az -e 'ssh -o Port=2222 -o '\''IdentityFile=~/.ssh/jetson key'\''' 'ofa w1.2.safetensors' nvidia@xavier:dynofa/weights/"#
        );
    }

    #[test]
    fn service_installs_the_rule_and_the_unit_with_sudo_on_a_tty() {
        let steps =
            plan(&args(&["--service", "--service-args", "run --target-ms 30"]), &files(), &tools(false)).unwrap();
        assert!(steps[0].argv.last().unwrap().ends_with("dynofa/deploy"));
        assert_eq!(
            steps[3].argv,
            ["scp", "-p", "deploy/99-dynofa-dvfs.rules", "deploy/dynofa.service", "nvidia@xavier:dynofa/deploy/"]
        );
        let install = &steps[4];
        assert_eq!(install.argv[..3], ["ssh", "-t", "nvidia@xavier"]);
        let script = &install.argv[3];
        for part in [
            "cd dynofa && sudo groupadd -f dynofa",
            "sudo install -m 0644 deploy/99-dynofa-dvfs.rules /etc/udev/rules.d/99-dynofa-dvfs.rules",
            "udevadm trigger --action=add --subsystem-match=devfreq --subsystem-match=cpu",
            "-e 's|@ARGS@|run --target-ms 30|g' deploy/dynofa.service | sudo tee /etc/systemd/system/dynofa.service",
            "sudo systemctl enable --now dynofa.service",
        ] {
            assert!(script.contains(part), "{part:?} missing from {script}");
        }
        let udev_only = plan(&args(&["--udev"]), &files(), &tools(false)).unwrap();
        assert!(!udev_only[4].argv[3].contains("systemctl"));
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in
            [&["--dir", "my dir"][..], &["--dir=-rf"], &["--dir", "$(reboot)"], &["--service-args", "run; reboot"]]
        {
            assert!(plan(&args(bad), &files(), &tools(false)).is_err(), "{bad:?}");
        }
        let mut a = args(&[]);
        a.host = "-oProxyCommand=x".into();
        assert!(plan(&a, &files(), &tools(false)).is_err());
    }

    #[test]
    fn default_luts_leave_out_the_host_ones() {
        let dir = std::env::temp_dir().join(format!("dynofa-flash-luts-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("host-cpu-ops")).unwrap();
        for f in ["xavier-nx.json", "host-cpu.json", "dynamic-ofa-nx.json", "README.md"] {
            std::fs::write(dir.join(f), "{}").unwrap();
        }
        let (copied, skipped) = lut_files(&[], &dir);
        let given = lut_files(&[dir.join("host-cpu.json")], &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(copied, [dir.join("dynamic-ofa-nx.json"), dir.join("xavier-nx.json")]);
        assert_eq!(skipped, [dir.join("host-cpu.json")]);
        assert_eq!(given, (vec![dir.join("host-cpu.json")], Vec::new()));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("nvidia@xavier:dynofa/"), "nvidia@xavier:dynofa/");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    /// The plan run for real, with stand-ins for ssh and scp that act on a local folder as the board.
    #[test]
    fn the_steps_install_the_files() {
        let tmp = std::env::temp_dir().join(format!("dynofa-flash-test-{}", std::process::id()));
        let board = tmp.join("home");
        let bin = tmp.join("bin");
        std::fs::create_dir_all(&board).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let home = board.display();
        let script = |name: &str, body: String| {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path.display().to_string()
        };
        // ssh: skip the options and the host, run the command in the board's home.
        let ssh = script(
            "ssh",
            format!(
                "while [ $# -gt 0 ]; do case \"$1\" in -t) shift;; -o) shift 2;; *) break;; esac; done\nshift\ncd '{home}' && sh -c \"$*\"\n"
            ),
        );
        // scp: copy every file to the folder after `host:`.
        let scp = script(
            "scp",
            format!(
                "while [ $# -gt 0 ]; do case \"$1\" in -p) shift;; -o) shift 2;; *) break;; esac; done\nfor f; do last=$f; done\nwhile [ $# -gt 1 ]; do cp \"$1\" '{home}'/\"${{last#*:}}\"; shift; done\n"
            ),
        );
        let f = tmp.join("dynofa");
        let lut = tmp.join("xavier-nx.json");
        std::fs::write(&f, "binary").unwrap();
        std::fs::write(&lut, "{}").unwrap();
        let files = Files { binary: f, luts: vec![lut], weights: Vec::new(), deploy: Vec::new() };
        let steps = plan(&args(&["--ssh-option", "BatchMode=yes"]), &files, &Tools { ssh, scp, rsync: None }).unwrap();
        let result = execute(&steps);
        let copied = (
            std::fs::read_to_string(board.join("dynofa/dynofa")),
            std::fs::read_to_string(board.join("dynofa/luts/xavier-nx.json")),
        );
        std::fs::remove_dir_all(&tmp).unwrap();
        result.unwrap();
        assert_eq!((copied.0.unwrap(), copied.1.unwrap()), ("binary".to_owned(), "{}".to_owned()));
    }
}
