#![doc = include_str!("../README.md")]

pub mod board;
pub mod derive;
pub mod model;
pub mod oracle;
pub mod plot;
pub mod scenario;
pub mod sim;
pub mod table;
pub mod trace;

use std::path::{Path, PathBuf};

use dynofa_core::lut::LutError;
use dynofa_core::runtime::RuntimeError;

pub use board::{SIM_ENTRIES, SimLut};
pub use scenario::Scenario;
pub use sim::{PolicyKind, Run, Summary, simulate};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A scenario is malformed.
    #[error("scenario {origin}: {reason}")]
    Scenario {
        /// Its name or path.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A LUT file was refused.
    #[error("lut {}: {source}", path.display())]
    Lut {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: LutError,
    },
    /// A policy could not be built for the scenario.
    #[error("policy: {0}")]
    Policy(String),
    /// The runtime stopped.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// Reference data could not be used.
    #[error("reference data {}: {reason}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A plot could not be drawn.
    #[error("plot {}: {reason}", path.display())]
    Plot {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The LUT built from Dynamic-OFA's stored levels ([`mod@derive`]).
pub fn dynamic_ofa_lut_path() -> PathBuf {
    workspace_root().join("luts/dynamic-ofa-nx.json")
}

/// The default LUT: the searched Pareto set for the Xavier NX (`luts/xavier-nx.json`) when it
/// exists, else Dynamic-OFA's stored levels.
pub fn default_lut_path() -> PathBuf {
    let searched = workspace_root().join("luts/xavier-nx.json");
    if searched.exists() { searched } else { dynamic_ofa_lut_path() }
}

/// Read a LUT file.
pub fn load_lut(path: &Path) -> Result<SimLut, SimError> {
    let text = std::fs::read(path).map_err(|source| SimError::Read { path: path.into(), source })?;
    SimLut::from_json(&text).map_err(|source| SimError::Lut { path: path.into(), source })
}
