//! The CUDA engine: dynofa-kernels' CUDA C kernels (`kernels/cuda/dynofa.cu`) compiled by NVRTC at
//! start for the GPU present, the supernet's weights uploaded once, and one CUDA graph captured per
//! prepared sub-network; switching selects a graph (and with it the sub-network's BN set).
//!
//! cudarc loads `libcuda` and `libnvrtc` at run time, so the program builds and runs without CUDA;
//! [`GpuError::NoDriver`] or [`GpuError::NoNvrtc`] then says what is missing. The backend needs the
//! `cuda-12060` (default), `cuda-12020` or `cuda-11040` feature of this crate.

#[cfg(feature = "cuda")]
mod engine;

pub use dynofa_kernels::gpu::BarrierOrder;
#[cfg(feature = "cuda")]
pub use engine::{CompileReport, Device, GpuEngine, GpuOptions, Tuning, compile_ptx, nvrtc_archs};

use dynofa_core::SubnetId;
use dynofa_core::hal::ErrorKind;
use dynofa_kernels::EngineError;

/// Why the CUDA engine could not start or refused a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// This program was built without a CUDA feature.
    #[error(
        "this dynofa was built without CUDA: rebuild with the default features or --features \
         dynofa-hal-jetson/cuda-11040 (JetPack 5) or cuda-12060 (JetPack 6)"
    )]
    NotBuilt,
    /// `libcuda.so` could not be loaded.
    #[error(
        "no CUDA driver: libcuda.so was not found; install the NVIDIA driver (on a Jetson: JetPack) or add \
         its folder to LD_LIBRARY_PATH, or use --backend cpu"
    )]
    NoDriver,
    /// `libnvrtc.so` could not be loaded (and no compiled kernels were cached).
    #[error(
        "no NVRTC: libnvrtc.so was not found to compile the CUDA kernels; on a Jetson it is in \
         /usr/local/cuda/lib64: run with LD_LIBRARY_PATH=/usr/local/cuda/lib64"
    )]
    NoNvrtc,
    /// The driver found no GPU.
    #[error("no CUDA device: the driver is present but finds no GPU ({0})")]
    NoDevice(String),
    /// A CUDA driver call failed.
    #[error("CUDA {what} failed: {error}")]
    Driver {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        error: String,
    },
    /// NVRTC refused the kernels.
    #[error("NVRTC could not compile the kernels for {arch}: {log}")]
    Compile {
        /// The target (`compute_87`, ...).
        arch: String,
        /// NVRTC's log.
        log: String,
    },
    /// The sub-network has no captured graph: call `GpuEngine::prepare` with it first.
    #[error("sub-network {0:?} is not prepared on the CUDA engine: pass it to GpuEngine::prepare first")]
    NotPrepared(SubnetId),
    /// A refused config or buffer (as the CPU engine refuses them).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl dynofa_core::hal::Error for GpuError {
    fn kind(&self) -> ErrorKind {
        match self {
            GpuError::NotBuilt | GpuError::NoDriver | GpuError::NoNvrtc | GpuError::NoDevice(_) => {
                ErrorKind::Unsupported
            }
            GpuError::Driver { .. } | GpuError::Compile { .. } => ErrorKind::Device,
            GpuError::NotPrepared(_) => ErrorKind::NotPrepared,
            GpuError::Engine(e) => dynofa_core::hal::Error::kind(e),
        }
    }
}

/// What the CUDA engine would find here, in one line: the GPU and the architectures NVRTC compiles
/// for, or why the engine cannot start (a build without CUDA, no driver, no GPU).
pub fn probe() -> Result<String, GpuError> {
    #[cfg(feature = "cuda")]
    return engine::probe();
    #[cfg(not(feature = "cuda"))]
    Err(GpuError::NotBuilt)
}

/// Whether the CUDA driver library can be loaded here (false in a build without CUDA).
pub fn driver_present() -> bool {
    #[cfg(feature = "cuda")]
    // SAFETY: only tries to dlopen the driver library.
    return unsafe { cudarc::driver::sys::is_culib_present() };
    #[cfg(not(feature = "cuda"))]
    false
}
