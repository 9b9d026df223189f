//! Design-time tools: OFA's accuracy predictor with its published weights, OFA's per-op latency
//! tables (or a latency model fitted on measured sub-networks), the evolutionary search that turns
//! them into a Pareto set, and the LUT it writes.
//!
//! ```text
//! per-op tables (OFA format, one per resolution) ──────> LatencyModel ─┐
//! LUT of measured sub-networks ──> fitted model (fit) ──┘              │
//! accuracy predictor (data/acc_predictor.safetensors) ─────────────────┴─> search over constraints
//!                                                              ──> Pareto set per unit ──> LUT JSON
//! ```

pub mod fit;
pub mod latency;
pub mod lutgen;
pub mod predictor;
pub mod profile;
pub mod search;

use std::path::PathBuf;

use dynofa_core::hal::ErrorKind;
use dynofa_core::predictor::PredictorError;

/// What went wrong in a design-time tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DesignError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not JSON of the expected shape.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A file is not YAML of the expected shape.
    #[error("{}: {source}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_yaml_ng::Error,
    },
    /// A weights file is not safetensors.
    #[error("{}: not a safetensors file ({message})", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor is missing or has the wrong dtype or shape.
    #[error("{}: tensor \"{key}\": expected {expected}, found {found}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        key: String,
        /// What was required.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A per-op table lacks an op that a sub-network runs.
    #[error(
        "{}: no latency for op \"{key}\"; profile it with `cargo xtask profile --ops` or use tables that cover this sub-network",
        file.display()
    )]
    MissingOp {
        /// The op key.
        key: String,
        /// The table file.
        file: PathBuf,
    },
    /// A folder holds no per-op tables.
    #[error("{}: no per-op latency tables (files named <resolution>_lookup_table.json or .yaml)", dir.display())]
    NoTables {
        /// The folder.
        dir: PathBuf,
    },
    /// A folder holds two tables for one resolution (JSON and YAML).
    #[error("{}: two latency tables for resolution {r}; keep one of the JSON and YAML files", dir.display())]
    DuplicateTable {
        /// The folder.
        dir: PathBuf,
        /// The resolution.
        r: u16,
    },
    /// A table set has no table for a resolution.
    #[error("{}: no latency table for resolution {r} (expected {r}_lookup_table.json or .yaml there)", dir.display())]
    MissingResolution {
        /// The folder.
        dir: PathBuf,
        /// The resolution.
        r: u16,
    },
    /// A sub-network's resolution is outside the latency model's.
    #[error("resolution {r} is not one of the search's resolutions")]
    ResolutionNotCovered {
        /// The resolution.
        r: u16,
    },
    /// No sub-network met a latency constraint in the allowed random draws.
    #[error(
        "no sub-network met the constraint of {constraint_ms:.3} ms in {draws} random draws (the fastest possible is {fastest_ms:.3} ms); raise the constraint"
    )]
    Infeasible {
        /// The constraint in ms.
        constraint_ms: f64,
        /// Draws tried.
        draws: u64,
        /// The fastest sub-network's latency in ms.
        fastest_ms: f64,
    },
    /// A LUT has too few measured sub-networks at an operating point to fit a latency model on.
    #[error(
        "{}: {found} sub-networks measured at {point} (unit@kHz), a latency model needs at least {needed}; time more with `dynofa profile --subnets` or name one of the LUT's points ({available})",
        path.display()
    )]
    TooFewMeasurements {
        /// The LUT file.
        path: PathBuf,
        /// The operating point asked for, as `unit@kHz`.
        point: String,
        /// Entries measured there.
        found: usize,
        /// Entries required.
        needed: usize,
        /// The points the LUT has, comma-separated.
        available: String,
    },
    /// The predictor refused its weights or a sub-network.
    #[error(transparent)]
    Predictor(#[from] PredictorError),
    /// The inference engine failed while profiling.
    #[error("inference engine failed ({kind}): {message}")]
    Engine {
        /// What kind of failure.
        kind: ErrorKind,
        /// The engine's error.
        message: String,
    },
    /// A LUT could not be built, read or written.
    #[error("{0}")]
    Lut(String),
}

/// Path of a file relative to the workspace root (the parent of this crate's folder).
pub fn workspace_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Reference data the tests read from `../shared` beside the workspace.
#[cfg(test)]
pub(crate) mod testdata {
    use std::path::PathBuf;

    use dynofa_core::SubnetConfig;
    use serde::Deserialize;

    use super::latency::OpTables;
    use super::workspace_path;

    /// A file of `../shared/data/dynamic-ofa/`.
    pub fn shared_path(rel: &str) -> PathBuf {
        workspace_path("../shared/data/dynamic-ofa").join(rel)
    }

    /// The Xavier NX GPU per-op tables.
    pub fn gpu_tables() -> OpTables {
        OpTables::load_dir(&shared_path("latency_table@jetson_GPU")).unwrap()
    }

    /// A stored Dynamic-OFA level with the table sums computed when it was extracted.
    #[derive(Debug, Clone)]
    pub struct Level {
        pub level: usize,
        pub config: SubnetConfig,
        pub lut_gpu_ms: f64,
        pub lut_cpu_ms: f64,
        /// Measured by Dynamic-OFA's authors (believed Xavier NX GPU, PyTorch, batch 1).
        pub latency_ms: f64,
    }

    #[derive(Deserialize)]
    struct RawLevel {
        level: usize,
        ks: [u8; 20],
        e: [u8; 20],
        d: [u8; 5],
        r: u16,
        lut_gpu_ms: f64,
        lut_cpu_ms: f64,
        latency_ms: f64,
    }

    fn set(name: &str) -> Vec<Level> {
        #[derive(Deserialize)]
        struct File {
            sets: std::collections::BTreeMap<String, Vec<RawLevel>>,
        }
        let text = std::fs::read(shared_path("subnets_extracted.json")).unwrap();
        let file: File = serde_json::from_slice(&text).unwrap();
        file.sets[name]
            .iter()
            .map(|l| Level {
                level: l.level,
                config: SubnetConfig { ks: l.ks, e: l.e, d: l.d, r: l.r },
                lut_gpu_ms: l.lut_gpu_ms,
                lut_cpu_ms: l.lut_cpu_ms,
                latency_ms: l.latency_ms,
            })
            .collect()
    }

    /// Dynamic-OFA's six-level set (the one whose predicted top-1 the issue quotes).
    pub fn nets_6() -> Vec<Level> {
        set("nets_6")
    }

    /// Dynamic-OFA's seven-level set.
    pub fn nets_7() -> Vec<Level> {
        set("nets_7")
    }
}
