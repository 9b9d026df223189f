//! NVRTC accepts the kernels for every GPU dynofa targets (Xavier sm_72, Orin sm_87, H100/H200
//! sm_90) and the PTX has every kernel of the launch plans. Needs libnvrtc but no GPU; says that it
//! skipped where libnvrtc is not found.

#[cfg(feature = "cuda")]
#[test]
fn nvrtc_compiles_the_kernels_for_every_target() {
    use dynofa_hal_jetson::gpu::{GpuError, compile_ptx};
    use dynofa_kernels::gpu::Kernel;

    for arch in ["compute_72", "compute_87", "compute_90"] {
        let ptx = match compile_ptx(arch) {
            Err(e @ GpuError::NoNvrtc) => return println!("skipped: {e}"),
            r => r.unwrap_or_else(|e| panic!("{e}")),
        };
        for k in Kernel::ALL {
            assert!(ptx.contains(&format!(".entry {}(", k.name())), "{arch}: no {} in the PTX", k.name());
        }
        println!("{arch}: {} bytes of PTX", ptx.len());
    }
}
