//! NVRTC accepts the kernels for every GPU dynofa targets that it supports (Xavier sm_72 needs
//! CUDA 12 or older, Orin sm_87, H100/H200 sm_90) and the PTX has every kernel of the launch plans,
//! the grid barrier's and the persistent kernel. ptxas (through NVRTC) finds no stack frame or
//! register spill in any kernel of the plans (a few in the persistent kernel), and the depthwise
//! kernels keep within two blocks' registers per multiprocessor. Needs libnvrtc but
//! no GPU; says that it skipped where libnvrtc is not found, unless `DYNOFA_REQUIRE_NVRTC` is set
//! (CI sets it once it has fetched libnvrtc, see `.ci/run`). With cuobjdump as well
//! (`DYNOFA_CUOBJDUMP`, which CI sets likewise), the GEMM tiles' k steps in the sm_90 machine code
//! stay within their instruction counts, and every kernel of the plans loads its weights before it
//! waits for the previous kernel and nothing of earlier launches' output before it.

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
/// persistent kernel. The depthwise kernels also keep within 128 registers (two blocks per
/// multiprocessor).
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
            // The depthwise kernels' 256-thread blocks, two per multiprocessor at least as their
            // tiles assume, in 128 registers each. They have no launch bound that would make ptxas
            // fit them: with one, it took the region kernel to 128 registers and a spill where it
            // takes 80 without (sm_90), and without one it took 136 once the taps were held
            // across the region's loads (fourteenth session), leaving room for one block.
            if matches!(name, "dynofa_depthwise" | "dynofa_depthwise_region") {
                let used: u32 = facts[1].split("Used ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap();
                assert!(used <= 128, "sm_{cc} {name}: {used} registers leave room for one block: {}", facts[1]);
            }
        }
    }
}

/// What `scripts/gpu/sass.py` says of every kernel of the engine's source compiled for sm_90,
/// computed once for the tests that read it (NVRTC takes tens of seconds); `None` (after saying
/// so) without cuobjdump.
fn sass() -> Option<&'static str> {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let Some(cuobjdump) = std::env::var_os("DYNOFA_CUOBJDUMP") else {
        println!("skipped: no cuobjdump (DYNOFA_CUOBJDUMP; `.ci/run` fetches one)");
        return None;
    };
    Some(TEXT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let source = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(source.path(), dynofa_kernels::gpu::source()).unwrap();
        let out = std::process::Command::new("python3")
            .arg(root.join("scripts/gpu/sass.py"))
            .arg(source.path())
            .args(["--arch", "sm_90", "--cuobjdump"])
            .arg(&cuobjdump)
            .output()
            .expect("python3 runs scripts/gpu/sass.py");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "sass.py failed:\n{text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }))
}

/// The k step of each GEMM tiling in the sm_90 machine code (`scripts/gpu/sass.py`: the loop with
/// the tiling's 64 or 256 multiply-adds) stays within an instruction count, and reads shared
/// memory in vector loads but for the step's gate. Each bound is a little above what NVRTC 12.9
/// made in the thirteenth session (179, 184 and 396), where address arithmetic worked out in the
/// loop and a scalar load per column had made 258, 239 and 550 (docs/gpu.md, "Tuning"). Likewise
/// the tensor cores' loop of 4 steps of 8 channels (48 `HMMA`, 4,096 multiply-adds a warp each;
/// 413 instructions in the fifteenth session), whose only shared loads are its 8 gates. A step's
/// cost on a GPU follows its instructions, and no GPU runs in CI: this keeps them from growing
/// unseen.
#[test]
fn the_gemm_k_steps_stay_within_their_instructions() {
    // The kernel, its loop's arithmetic, the most instructions, the scalar shared loads (gates).
    let steps = [
        ("dynofa_pointwise_small", "FFMA 64", 200, 1),
        ("dynofa_pointwise_ksplit", "FFMA 64", 210, 1),
        ("dynofa_pointwise", "FFMA 256", 420, 1),
        ("dynofa_pointwise_mma", "HMMA 48", 430, 8),
    ];
    let Some(text) = sass() else { return };
    // "dynofa_pointwise_small: 1640 instructions; ..." then its loops,
    // "  loop 0x16d0..0x2220: 182 instructions: FFMA 64, LDS.64 32, IMAD 17, ...".
    for (kernel, arithmetic, most, gates) in steps {
        let listing: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{kernel}:")))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        let step = listing
            .iter()
            .find(|l| l.contains(&format!(": {arithmetic},")) || l.contains(&format!(", {arithmetic},")))
            .unwrap_or_else(|| panic!("{kernel}: no loop of {arithmetic} in\n{text}"));
        println!("sm_90 {kernel} k step:{}", step.split_once(':').unwrap().1);
        let count: u32 = step.split(": ").nth(1).and_then(|n| n.split(' ').next()?.parse().ok()).unwrap();
        assert!(count <= most, "{kernel}: a k step of {count} instructions, more than {most}: {step}");
        // "FFMA 64, LDS.64 32, ..., LDS 1, BAR 1": one scalar shared load, the step's gate.
        let scalar = step.rsplit(": ").next().unwrap().split(", ").find_map(|op| op.strip_prefix("LDS "));
        assert!(
            scalar.is_none_or(|n| n.parse() == Ok(gates)),
            "{kernel}: scalar shared loads in the k step beyond its {gates} gates: {step}"
        );
    }
}

/// Every kernel of the plans loads its weights before it waits for the previous kernel, and nothing
/// it reads of earlier launches (an L2-coherent `ld.global.cg` load, `ld_act`) before the wait,
/// in the sm_90 machine code (`scripts/gpu/sass.py`), and has no read-only (`.nc`) load at all:
/// ptxas moves the wait above `.nc` loads, so that weights written before the wait loaded after
/// it, and a `.nc` load of an activation written after it may load before it, a race (docs/gpu.md,
/// "Where the kernels wait"). The stems follow the input copy, not a kernel, and wait first.
#[test]
fn every_kernel_loads_its_weights_before_it_waits() {
    // The loads before the (first) wait that NVRTC 12.9 made in the fourteenth session: each
    // thread's weights and BN of a GEMM tile's first step (the tensor cores': of its first 4
    // steps, fifteenth session), a matvec row (MV_PRE = 48 and its
    // bias), a warps kernel's lane, a depthwise layer's taps (the first instantiation's), the fused
    // kernels' staged weights. Fewer means ptxas moved weight loads after the wait.
    let kernels = [
        ("dynofa_stem", 0),
        ("dynofa_stem_block", 10),
        ("dynofa_pointwise", 12),
        ("dynofa_pointwise_small", 8),
        ("dynofa_pointwise_ksplit", 8),
        ("dynofa_pointwise_mma", 36),
        ("dynofa_pointwise_warps", 66),
        ("dynofa_pointwise_warps16", 34),
        ("dynofa_depthwise", 51),
        ("dynofa_depthwise_region", 51),
        ("dynofa_expand_depthwise", 13),
        ("dynofa_depthwise_project", 11),
        ("dynofa_matvec", 49),
    ];
    let Some(text) = sass() else { return };
    for (kernel, fewest) in kernels {
        // "...; waits for the previous kernel at instruction 488, after 49 global loads (0
        // read-only, 0 from L2); 0 read-only loads in all".
        let line = text.lines().find(|l| l.starts_with(&format!("{kernel}:"))).expect(text);
        let wait =
            line.split_once("after ").map(|(_, w)| w.to_string()).unwrap_or_else(|| panic!("{kernel} never waits"));
        println!("sm_90 {kernel} waits after {wait}");
        let numbers: Vec<u32> =
            wait.replace("L2", "").split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
        let [loads, read_only, from_l2, read_only_in_all] = numbers[..] else { panic!("{wait}") };
        assert!(loads >= fewest, "{kernel}: {loads} loads before the wait, where there were {fewest}");
        assert_eq!(
            (read_only, from_l2),
            (0, 0),
            "{kernel}: loads of what may still be written before the wait: {wait}"
        );
        assert_eq!(read_only_in_all, 0, "{kernel}: read-only loads, which ptxas may move across the wait: {wait}");
    }
}
