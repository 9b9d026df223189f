//! NVRTC accepts the kernels for every GPU dynofa targets that it supports (Xavier sm_72 needs
//! CUDA 12 or older, Orin sm_87, H100/H200 sm_90) and the PTX has every kernel of the launch plans,
//! the grid barrier's and the persistent kernel. ptxas (through NVRTC) finds no stack frame or
//! register spill in any kernel of the plans (a few in the persistent kernel). Needs libnvrtc but
//! no GPU; says that it skipped where libnvrtc is not found, unless `DYNOFA_REQUIRE_NVRTC` is set
//! (CI sets it once it has fetched libnvrtc, see `.ci/run`).

/// The targets of the NVRTC found here; `None` (after saying so) where there is none, unless
/// `DYNOFA_REQUIRE_NVRTC` is set.
#[cfg(feature = "cuda")]
fn archs() -> Option<Vec<u32>> {
    use dynofa_hal_jetson::gpu::{GpuError, nvrtc_archs};
    match nvrtc_archs() {
        Err(e @ GpuError::NoNvrtc) if std::env::var_os("DYNOFA_REQUIRE_NVRTC").is_none() => {
            println!("skipped: {e}");
            None
        }
        r => Some(r.unwrap()),
    }
}

#[cfg(feature = "cuda")]
#[test]
fn nvrtc_compiles_the_kernels_for_every_target() {
    use dynofa_hal_jetson::gpu::compile_ptx;
    use dynofa_kernels::gpu::{GRID_BARRIER, Kernel, PERSISTENT};

    let Some(archs) = archs() else { return };
    let mut compiled = 0;
    for cc in [72, 87, 90] {
        if !archs.contains(&cc) {
            println!("compute_{cc}: not supported by this NVRTC (it has {archs:?})");
            continue;
        }
        let ptx = compile_ptx(&format!("compute_{cc}")).unwrap_or_else(|e| panic!("{e}"));
        for name in Kernel::ALL.iter().map(|k| k.name()).chain([GRID_BARRIER, PERSISTENT]) {
            assert!(ptx.contains(&format!(".entry {name}(")), "compute_{cc}: no {name} in the PTX");
        }
        println!("compute_{cc}: {} bytes of PTX", ptx.len());
        compiled += 1;
    }
    assert!(compiled >= 2, "this NVRTC supports too few of dynofa's targets: {archs:?}");
}

/// A stack frame or register spills would put the GEMM tiles in local memory (a tile loop left
/// rolled did that once): ptxas (run by NVRTC for a real GPU target) reports neither for any kernel
/// of the plans on Orin (sm_87) and H100/H200 (sm_90), and about a kilobyte at most for the
/// persistent kernel.
#[cfg(feature = "cuda")]
#[test]
fn no_kernel_keeps_registers_in_local_memory() {
    use std::ffi::CString;

    use cudarc::nvrtc::result::{compile_program, create_program, destroy_program, get_program_log};
    use dynofa_kernels::gpu::{Kernel, PERSISTENT, source};

    let Some(archs) = archs() else { return };
    let src = CString::new(source()).unwrap();
    for cc in [87, 90].into_iter().filter(|cc| archs.contains(cc)) {
        let prog = create_program(&src, None).unwrap();
        let options = [format!("--gpu-architecture=sm_{cc}"), "--ptxas-options=-v".into()];
        // SAFETY: `prog` was just created and is destroyed once, after its log is read.
        let log = unsafe {
            let compiled = compile_program(prog, &options);
            let log = get_program_log(prog).unwrap();
            destroy_program(prog).unwrap();
            compiled.unwrap();
            log
        };
        let log: String = log.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect();
        for name in Kernel::ALL.iter().map(|k| k.name()).chain([PERSISTENT]) {
            let at = log
                .find(&format!("Function properties for {name}\n"))
                .unwrap_or_else(|| panic!("sm_{cc}: ptxas said nothing about {name}:\n{log}"));
            // "ptxas         .     0 bytes stack frame, ..." then "ptxas info    : Used 78 registers, ...".
            let facts: Vec<&str> = log[at..]
                .lines()
                .skip(1)
                .take(2)
                .map(|l| l.trim_start_matches("ptxas").trim_start_matches(" info").trim_start_matches([' ', '.', ':']))
                .collect();
            println!("sm_{cc} {name}: {}", facts.join("; "));
            // "80 bytes stack frame, 196 bytes spill stores, 312 bytes spill loads": the numbers.
            let bytes: Vec<u32> = facts[0].split(", ").filter_map(|f| f.split(' ').next()?.parse().ok()).collect();
            assert_eq!(bytes.len(), 3, "sm_{cc} {name}: {}", facts[0]);
            // The persistent kernel holds every kernel's registers in 128 per thread (512-thread
            // blocks): ptxas spills a few there (a frame of about 90 bytes, 200 to 250 bytes stored
            // and 330 to 570 loaded on sm_87 and sm_90 at first; with its groups and its table in
            // shared memory, about 150 / 290 / 1,100); a register tile in local memory would be
            // kilobytes (a loop per kernel for the groups made a 1.6 KB frame and 7 KB of loads).
            let most = if name == PERSISTENT { 1536 } else { 0 };
            assert!(bytes.iter().all(|&b| b <= most), "sm_{cc} {name}: {} (at most {most} bytes)", facts[0]);
        }
    }
}
