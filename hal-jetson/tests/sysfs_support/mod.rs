//! Shared by the sysfs tests: fake trees in temp folders, and re-running the test binary as a child
//! process (for signals and for a non-root user).
#![allow(dead_code, reason = "every sysfs test binary includes this module and uses part of it")]

use std::fs;
use std::io::{BufRead, BufReader, Lines};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dynofa_hal_jetson::linux::fake::{self, FakeBoard};
use tempfile::TempDir;

/// The environment variable that tells a test it runs as the child of itself, and where its tree is.
pub const CHILD_ROOT: &str = "DYNOFA_SYSFS_TEST_CHILD_ROOT";

/// A fresh fake tree of `board`, readable by every user (the non-root child must see it).
pub fn tree(board: FakeBoard) -> TempDir {
    let dir = tempfile::tempdir().expect("a temp folder");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod the temp folder");
    fake::create(board, dir.path()).expect("write the fake tree");
    dir
}

/// The trimmed content of `rel` under `root`.
pub fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")).trim().to_owned()
}

/// Overwrite `rel` under `root`, as another tool (nvpmodel) would.
pub fn write(root: &Path, rel: &str, value: &str) {
    fs::write(root.join(rel), value).unwrap_or_else(|e| panic!("{rel}: {e}"));
}

/// Whether this process runs as root (where file modes do not stop writes).
pub fn is_root() -> bool {
    // /proc/self belongs to the effective user of the process that reads it.
    fs::metadata("/proc/self").expect("procfs").uid() == 0
}

/// A command that runs test `name` of this test binary alone, as a child with `CHILD_ROOT` set to `root`.
///
/// With `creds` (uid, gid) the child runs as that user: the binary is copied beside the tree first, since
/// the build folder may not be readable by that user.
pub fn child(name: &str, root: &Path, creds: Option<(u32, u32)>) -> Command {
    let exe = std::env::current_exe().expect("the test binary");
    let exe = match creds {
        None => exe,
        Some(_) => {
            let copy = root.join("test-binary");
            fs::copy(&exe, &copy).expect("copy the test binary");
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod the copy");
            copy
        }
    };
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]).env(CHILD_ROOT, root).stdin(Stdio::null());
    if let Some((uid, gid)) = creds {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// A child process whose output lines are read as it runs.
pub struct Running {
    proc: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Running {
    /// Start `cmd` with its output piped.
    pub fn start(mut cmd: Command) -> Self {
        let mut proc = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the child");
        let lines = BufReader::new(proc.stdout.take().expect("piped stdout")).lines();
        Self { proc, lines, seen: Vec::new() }
    }

    /// Read its lines until one contains `marker`; fails the test if it ends first.
    pub fn wait_for(&mut self, marker: &str) {
        // libtest may put its own words before the marker on a line.
        for line in self.lines.by_ref().map_while(Result::ok) {
            let ready = line.contains(marker);
            self.seen.push(line);
            if ready {
                return;
            }
        }
        panic!("the child never printed {marker:?}; it printed {:?}", self.seen);
    }

    /// Send it `signal` (a `kill -s` name).
    pub fn signal(&self, signal: &str) {
        let killed = Command::new("kill").args(["-s", signal, &self.proc.id().to_string()]).status().expect("run kill");
        assert!(killed.success());
    }

    /// How it ended, within 10 s of the last signal (else it is killed and the test fails).
    pub fn wait(mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.proc.try_wait().expect("wait for the child") {
                return status;
            }
            if Instant::now() > deadline {
                self.proc.kill().expect("kill the child");
                panic!("the child did not end within 10 s of the signal");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Start `cmd`, wait until it prints a line containing `marker`, send it `signal` (a `kill -s` name), and
/// return how it ended (within 10 s, else it is killed and the test fails).
pub fn signal_once_ready(cmd: Command, marker: &str, signal: &str) -> ExitStatus {
    let mut child = Running::start(cmd);
    child.wait_for(marker);
    child.signal(signal);
    child.wait()
}
