//! Prints the CUDA source the engine compiles (`dynofa_kernels::gpu::source()`: the plan's
//! constants, then `kernels/cuda/dynofa.cu`), for `scripts/gpu/sass.py` and NVRTC by hand.

fn main() {
    print!("{}", dynofa_kernels::gpu::source());
}
