//! The Dynamic-OFA paper's figures from dynofa's own data (`dynofa figures`, `cargo xtask figures`):
//! an SVG and the CSV behind it for each.
//!
//! | figure | what | from |
//! |---|---|---|
//! | 1 | one sub-network's latency across clocks and co-running load, against its design-time latency | the simulator, or timed here (`host`, `jetson`) |
//! | 3 | random sub-networks' predicted top-1 against latency, with the search's Pareto front | per-op tables, the LUT |
//! | 4, 5 | the Pareto set's top-1 against latency and MACs beside published networks, and the headline comparison with AutoSlim-MNasNet | the LUT, `data/published-points.csv` |
//! | 6, 7, 8 | runtime traces of the `fig6`, `fig7` and `fig8` scenarios | the simulator |

mod chart;
mod cloud;
mod compare;
mod environment;
pub mod published;
mod traces;

use std::path::{Path, PathBuf};

use dynofa_core::lut::{OperatingPoint, Unit};
use dynofa_hal_sim::{PolicyKind, SimError};

use crate::design::lutgen::{self, DesignLut};
use crate::design::{DesignError, workspace_path};

pub use compare::{Comparison, Headline};

/// Where Figure 1's latencies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// The simulated Xavier NX (GPU and CPU, its DVFS and contention models).
    Sim,
    /// This machine's CPU engine under the built-in contention generator, clocks left to the governor.
    Host,
    /// As `Host`, with the CPU clock pinned at several operating points through cpufreq (a board).
    Jetson,
}

impl Platform {
    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Sim => "sim",
            Platform::Host => "host",
            Platform::Jetson => "jetson",
        }
    }
}

/// What to draw from what.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where Figure 1's latencies come from.
    pub platform: Platform,
    /// The LUT: the Pareto set a search wrote (or a profiled one).
    pub lut: PathBuf,
    /// Folder the SVGs and CSVs go to.
    pub out: PathBuf,
    /// Per-op tables of the GPU (Figure 3's cloud), if any.
    pub gpu_tables: Option<PathBuf>,
    /// Per-op tables of the CPU (Figure 3's cloud), if any.
    pub cpu_tables: Option<PathBuf>,
    /// Published points of other networks.
    pub published: PathBuf,
    /// Random sub-networks in Figure 3's cloud.
    pub cloud: usize,
    /// Seed of the cloud's draws.
    pub seed: u64,
    /// The policy of the runtime traces.
    pub policy: PolicyKind,
    /// Timed runs per point of Figure 1 on `host` and `jetson`.
    pub reps: usize,
    /// The command that produced the figures, for their captions.
    pub command: String,
}

/// What went wrong while making a figure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FigureError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A design-time tool failed (tables, predictor, LUT, profiling).
    #[error(transparent)]
    Design(#[from] DesignError),
    /// The simulator failed, or a plot could not be drawn.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A line of the published points is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Published {
        /// The file.
        path: PathBuf,
        /// Its line (1-based).
        line: usize,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The LUT lacks what a figure needs.
    #[error("{}: {reason}", path.display())]
    Lut {
        /// The LUT.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Figure 1 could not be measured on this machine.
    #[error("figure 1 on {platform}: {reason}")]
    Platform {
        /// The platform asked for.
        platform: &'static str,
        /// Why not, and what to do.
        reason: String,
    },
}

/// What [`generate`] wrote and computed.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// The comparisons with AutoSlim-MNasNet.
    pub headline: Headline,
}

/// The default LUT: the searched Xavier NX set.
pub fn default_lut() -> PathBuf {
    workspace_path("luts/xavier-nx.json")
}

/// The default published points.
pub fn default_published() -> PathBuf {
    workspace_path("data/published-points.csv")
}

/// The Xavier NX per-op tables of a unit in the reference data beside the workspace, if present.
pub fn default_tables(unit: Unit) -> Option<PathBuf> {
    let dir = match unit {
        Unit::Gpu => "latency_table@jetson_GPU",
        Unit::Cpu => "latency_table@jetson",
    };
    let path = workspace_path("../shared/data/dynamic-ofa").join(dir);
    path.is_dir().then_some(path)
}

/// A path as captions and CSV headers show it: relative to the workspace where it lies inside the
/// workspace or beside it (`../shared/...`), so that the figures read the same from any checkout.
/// Tried as written first (so a symlinked `../shared` still shows as `../shared/...`), then with
/// symlinks resolved.
pub fn shown_path(path: &Path) -> String {
    let root = workspace_path("");
    let tries = [
        (std::path::absolute(path).map(lexical), std::path::absolute(&root).map(lexical)),
        (path.canonicalize(), root.canonicalize()),
    ];
    for (p, root) in tries {
        let (Ok(p), Ok(root)) = (p, root) else { continue };
        if let Ok(rel) = p.strip_prefix(&root) {
            return rel.display().to_string();
        }
        if let Some(Ok(rel)) = root.parent().map(|parent| p.strip_prefix(parent)) {
            return Path::new("..").join(rel).display().to_string();
        }
    }
    path.display().to_string()
}

/// `path` with `.` and `..` taken out as written (not following symlinks).
fn lexical(path: PathBuf) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Write a text file, creating nothing but the file.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), FigureError> {
    std::fs::write(path, text).map_err(|source| FigureError::Io { path: path.into(), source })
}

/// A CSV's comment lines: what it holds, what produced it from what, and when (the date on a line of
/// its own, which [`stale`] ignores).
pub(crate) fn csv_comments(what: &str, produced: &str) -> String {
    format!("# {what}\n# produced by {produced}\n{DATE_PREFIX}{}\n", lutgen::today())
}

/// A CSV's comment lines and its column names.
pub(crate) fn csv_header(what: &str, produced: &str, columns: &str) -> String {
    format!("{}{columns}\n", csv_comments(what, produced))
}

const DATE_PREFIX: &str = "# date: ";

/// The operating point a LUT's latencies on `unit` were recorded at (its first for that unit).
pub(crate) fn lut_point(lut: &DesignLut, unit: Unit) -> Option<OperatingPoint> {
    lut.entries().iter().flat_map(|e| e.latency.iter()).find(|l| l.unit == unit).map(|l| l.point())
}

/// Read the LUT of `opts`.
pub(crate) fn read_lut(path: &Path) -> Result<DesignLut, FigureError> {
    let lut = lutgen::read_lut(path)?;
    if lut.is_empty() {
        return Err(FigureError::Lut { path: path.into(), reason: "the LUT has no entries".into() });
    }
    Ok(lut)
}

/// Make every figure of `opts`: Figure 1 on `opts.platform`, Figures 3 to 5 from the LUT, the
/// tables and the published points, Figures 6 to 8 on the simulator.
pub fn generate(opts: &Options) -> Result<Report, FigureError> {
    std::fs::create_dir_all(&opts.out).map_err(|source| FigureError::Io { path: opts.out.clone(), source })?;
    let lut = read_lut(&opts.lut)?;
    let published = published::load(&opts.published)?;
    let mut files = Vec::new();
    files.extend(environment::figure(opts, &lut)?);
    files.extend(cloud::figure(opts, &lut)?);
    let (compare_files, headline) = compare::figures(opts, &lut, &published)?;
    files.extend(compare_files);
    files.extend(traces::figures(opts, &lut)?);
    Ok(Report { files, headline })
}

/// The files of `fresh` that differ from their namesakes in `committed` (or are missing there),
/// ignoring CSV date lines: what `--check` reports as stale.
pub fn stale(fresh: &[PathBuf], committed: &Path) -> Result<Vec<PathBuf>, FigureError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| FigureError::Io { path: p.into(), source });
    let undated = |text: String| -> String {
        text.lines().filter(|l| !l.starts_with(DATE_PREFIX)).collect::<Vec<_>>().join("\n")
    };
    let mut out = Vec::new();
    for f in fresh {
        let Some(name) = f.file_name() else { continue };
        let old = committed.join(name);
        if !old.is_file() || undated(read(&old)?) != undated(read(f)?) {
            out.push(old);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_beside_the_workspace_show_as_written() {
        assert_eq!(lexical(PathBuf::from("/a/b/./../c/d/..")), PathBuf::from("/a/c"));
        // Not followed through any symlink (none need exist): `../shared` stays `../shared`.
        let beside = workspace_path("../shared/data/none-such");
        assert_eq!(shown_path(&beside), "../shared/data/none-such");
        assert_eq!(shown_path(&workspace_path("luts/./xavier-nx.json")), "luts/xavier-nx.json");
    }
}
