//! `dynofa run`, the main job: the runtime manager driving real inference on this machine while the
//! hardware changes under it.
//!
//! ```text
//! frames (synthetic or images) ──> FrameEngine (resample to the active r, CPU or CUDA engine)
//!     ──> latency ──> Runtime (one per model thread) ──> ModelView ──> Joint<Dynofa> (one joint
//!     plan) ──> switch
//! schedule: target steps per model; contention (busy threads, or GPU streams) on/off; CPU and GPU
//!     clock pins (DVFS)
//! ──> status line, summary, trace CSV and SVG plot (the simulator's formats)
//! ```
//!
//! - [`backend`]: the CPU and the CUDA engine as the run drives them, with their unit's clock,
//!   load sensor and contention.
//! - [`hostlut`]: the LUT, with this machine's latencies (timed at start-up unless a committed host
//!   LUT agrees with a quick measurement).
//! - [`schedule`]: models, targets and the machine's events; the built-in demo.
//! - [`contend`]: the contention generator.
//! - [`frames`]: frames and the engine adapter that resamples them and times activations.
//! - [`joint`]: one policy shared by the models' threads; the wall clock.
//! - [`session`]: the threads, the status line and the trace.

pub mod backend;
pub mod console;
pub mod contend;
pub mod frames;
pub mod hostlut;
pub mod joint;
pub mod schedule;
pub mod session;

use std::path::PathBuf;

use dynofa_core::runtime::RuntimeError;

pub use session::{ModelEngine, Options, Outcome, run, run_on};

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A model or schedule file is malformed.
    #[error("{origin}: {reason}")]
    Spec {
        /// The file or option.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The image folder cannot be used.
    #[error("--images {}: {reason}", dir.display())]
    Images {
        /// The folder.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A LUT cannot be used.
    #[error("lut {name}: {reason}")]
    Lut {
        /// The file.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The CUDA engine could not start or refused a call.
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// The weights cannot be loaded.
    #[error(transparent)]
    Weights(#[from] dynofa_kernels::WeightsError),
    /// Timing or reading a LUT failed.
    #[error(transparent)]
    Design(#[from] crate::design::DesignError),
    /// The manager refused the models.
    #[error("runtime manager: {0}")]
    Control(dynofa_core::control::ControlError),
    /// A model's runtime stopped.
    #[error("model {model}: {source}")]
    Runtime {
        /// The model.
        model: String,
        /// Why.
        source: RuntimeError,
    },
    /// Ctrl-C came before the first frame: nothing to summarise.
    #[error("stopped before the run began")]
    Stopped,
    /// A thread could not start or ended in a panic.
    #[error("{0}")]
    Thread(String),
    /// The trace or the plot could not be written.
    #[error(transparent)]
    Output(#[from] dynofa_hal_sim::SimError),
}
