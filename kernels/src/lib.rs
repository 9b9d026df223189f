//! CPU kernels and the CPU engine of dynofa.
//!
//! - [`weights`]: OFA MobileNetV3's state dict from safetensors (original key names, w1.0 and
//!   w1.2), checked and laid out once for the kernels; per-sub-network BN statistics.
//! - [`seeded`]: deterministic seeded weights (bit-identical on x86_64 and aarch64), the default
//!   when no checkpoint is given.
//! - [`cpu`]: reference and fast kernels and [`CpuEngine`], which runs any sub-network directly
//!   on the shared weights and switches without allocating or copying.
//! - [`import`]: torch checkpoints (OFA's released supernets) to safetensors, through a pickle
//!   reader that runs no code.
//! - [`gpu`]: the CUDA C kernels (`kernels/cuda/`), the weights as one device image and each
//!   sub-network's launch plan, for the GPU engine of `dynofa-hal-jetson` and the host emulation.
//! - [`preprocess`], [`dataset`]: OFA's evaluation preprocessing (torchvision's, bit for bit on
//!   decoded pixels) and ImageNet-style folders as torchvision's `ImageFolder` reads them.
//! - [`calib`]: a sub-network's BN statistics re-estimated on images (OFA's
//!   `set_running_statistics`).

pub mod calib;
pub mod counting;
pub mod cpu;
pub mod dataset;
pub mod goldens;
pub mod gpu;
pub mod import;
pub mod preprocess;
pub mod rng;
pub mod seeded;
pub mod statedict;
pub mod weights;

pub use cpu::{CpuEngine, EngineError, Isa};
pub use seeded::{DEFAULT_SEED, seeded_safetensors};
pub use weights::{BnTable, SupernetWeights, WeightsError, load_tensor, save_tensor};
