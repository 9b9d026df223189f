//! The one error type of the Linux platform: every failure names the file involved and the fix.

use std::io;
use std::path::PathBuf;

use dynofa_core::hal::{self, ErrorKind};
use dynofa_core::lut::Unit;

/// A sysfs or procfs failure of the Linux platform.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysfsError {
    /// A file or folder the platform needs does not exist.
    #[error("{} not found: {what}", path.display())]
    Missing {
        /// What was looked for.
        path: PathBuf,
        /// What the file is for and what to do.
        what: &'static str,
    },
    /// Reading a file failed.
    #[error("cannot read {}: {source}; {}", path.display(), fix(source))]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Writing (or opening for writing) a file failed.
    #[error("cannot write {}: {source}; {}", path.display(), fix(source))]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A file held something other than what the kernel writes there.
    #[error("{}: cannot parse {content:?} as {expected}; is this the file the kernel documents?", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held (trimmed).
        content: String,
        /// What was expected.
        expected: &'static str,
    },
    /// No devfreq node of a GPU.
    #[error(
        "no GPU devfreq node in {} (looked for *.gv11b, *.ga10b, *.gpu); GPU DVFS needs a Jetson with nvgpu loaded",
        dir.display()
    )]
    NoGpu {
        /// The folder that was scanned.
        dir: PathBuf,
    },
    /// The cpufreq driver lists no frequencies to pin.
    #[error(
        "{} lists no operating points (cpufreq driver {driver}); pinning needs a table driver such as acpi-cpufreq or a Jetson's",
        path.display()
    )]
    NoOperatingPoints {
        /// The file (or folder) that should list them.
        path: PathBuf,
        /// The cpufreq driver in charge.
        driver: String,
    },
    /// A frequency that is not one of the unit's operating points.
    #[error("{khz} kHz is not an operating point of the {unit}; `dynofa platform` lists them")]
    NotAnOperatingPoint {
        /// The unit.
        unit: Unit,
        /// The refused frequency.
        khz: u32,
    },
    /// After pinning, the clock reads back as something else: another tool sets the clocks.
    #[error(
        "the {unit} reads back {found_khz} kHz from {} after pinning {pinned_khz} kHz; another tool (nvpmodel, jetson_clocks) may be setting clocks: stop it or let dynofa follow the clock",
        path.display()
    )]
    ReadBack {
        /// The unit.
        unit: Unit,
        /// The current-frequency file.
        path: PathBuf,
        /// What was pinned.
        pinned_khz: u32,
        /// What was read.
        found_khz: u32,
    },
    /// The handler that restores clocks on SIGINT/SIGTERM/SIGHUP could not be installed.
    #[error("cannot install the signal handler that restores clocks on exit: {source}; clocks were left as they are")]
    Signals {
        /// The failure.
        source: io::Error,
    },
}

/// What to do about an I/O failure on a sysfs file.
fn fix(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "add this user to group dynofa and install deploy/99-dynofa-dvfs.rules (docs/jetson.md); no root needed"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "sysfs is mounted read-only (a container?): run on the host or mount /sys read-write"
        }
        io::ErrorKind::NotFound => "the kernel does not expose it here (another kernel or board?)",
        _ => "check the kernel log (dmesg)",
    }
}

impl SysfsError {
    /// The file this error is about, where there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Missing { path, .. }
            | Self::Read { path, .. }
            | Self::Write { path, .. }
            | Self::Parse { path, .. }
            | Self::NoOperatingPoints { path, .. }
            | Self::ReadBack { path, .. } => Some(path),
            Self::NoGpu { dir } => Some(dir),
            Self::NotAnOperatingPoint { .. } | Self::Signals { .. } => None,
        }
    }
}

impl hal::Error for SysfsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Missing { .. } | Self::NoGpu { .. } | Self::NoOperatingPoints { .. } => ErrorKind::Unsupported,
            Self::Read { source, .. } | Self::Write { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
                io::ErrorKind::NotFound => ErrorKind::Unsupported,
                _ => ErrorKind::Device,
            },
            Self::NotAnOperatingPoint { .. } => ErrorKind::InvalidInput,
            Self::Parse { .. } | Self::ReadBack { .. } => ErrorKind::Device,
            Self::Signals { .. } => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynofa_core::hal::Error as _;

    #[test]
    fn kinds_follow_the_io_failure() {
        let write = |kind| SysfsError::Write { path: "/sys/x".into(), source: io::Error::from(kind) };
        assert_eq!(write(io::ErrorKind::PermissionDenied).kind(), ErrorKind::PermissionDenied);
        assert_eq!(write(io::ErrorKind::ReadOnlyFilesystem).kind(), ErrorKind::PermissionDenied);
        assert_eq!(write(io::ErrorKind::NotFound).kind(), ErrorKind::Unsupported);
        assert_eq!(write(io::ErrorKind::InvalidInput).kind(), ErrorKind::Device);
        assert_eq!(SysfsError::NotAnOperatingPoint { unit: Unit::Gpu, khz: 1 }.kind(), ErrorKind::InvalidInput);
        assert_eq!(SysfsError::NoGpu { dir: "/sys/class/devfreq".into() }.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn messages_name_the_file_and_the_fix() {
        let e = SysfsError::Write {
            path: "/sys/class/devfreq/17000000.gv11b/min_freq".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let msg = e.to_string();
        assert!(msg.contains("/sys/class/devfreq/17000000.gv11b/min_freq"), "{msg}");
        assert!(msg.contains("99-dynofa-dvfs.rules"), "{msg}");
        assert!(msg.starts_with("cannot write") && !msg.ends_with('.'), "{msg}");
    }
}
