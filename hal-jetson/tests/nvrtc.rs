//! NVRTC accepts the kernels for every GPU dynofa targets that it supports (Xavier sm_72 needs
//! CUDA 12 or older, Orin sm_87, H100/H200 sm_90) and the PTX has every kernel of the launch plans.
//! Needs libnvrtc but no GPU; says that it skipped where libnvrtc is not found.

#[cfg(feature = "cuda")]
#[test]
fn nvrtc_compiles_the_kernels_for_every_target() {
    use dynofa_hal_jetson::gpu::{GpuError, compile_ptx, nvrtc_archs};
    use dynofa_kernels::gpu::Kernel;

    let archs = match nvrtc_archs() {
        Err(e @ GpuError::NoNvrtc) => return println!("skipped: {e}"),
        r => r.unwrap(),
    };
    let mut compiled = 0;
    for cc in [72, 87, 90] {
        if !archs.contains(&cc) {
            println!("compute_{cc}: not supported by this NVRTC (it has {archs:?})");
            continue;
        }
        let ptx = compile_ptx(&format!("compute_{cc}")).unwrap_or_else(|e| panic!("{e}"));
        for k in Kernel::ALL {
            assert!(ptx.contains(&format!(".entry {}(", k.name())), "compute_{cc}: no {} in the PTX", k.name());
        }
        println!("compute_{cc}: {} bytes of PTX", ptx.len());
        compiled += 1;
    }
    assert!(compiled >= 2, "this NVRTC supports too few of dynofa's targets: {archs:?}");
}
