//! The CUDA kernels and launch plans on the host: `kernels/cuda/dynofa.cu` compiled by the system's
//! C++ compiler through `kernels/cuda/emulate.h` (threads as fibers, `__syncthreads` as a real
//! barrier), each plan run launch by launch on host buffers, against the golden logits (the same
//! bar as every engine: max |y - ref| / max |ref| <= 1e-4). This is what the GPU engine runs, less
//! NVRTC and the driver. Without a C++ compiler the test says it skipped.

use std::ffi::{CString, c_char, c_int, c_void};
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use dynofa_kernels::gpu::{
    Arg, BarrierOrder, Buffer, EMULATE_H, GpuImage, Kernel, Launch, PERSISTENT, PERSISTENT_BODY_SHARED,
    PERSISTENT_SHARED, PERSISTENT_THREADS, PWK_FEW, PWK_KS, PWM_GROUPS, Target, bn_image, persistent_shared,
    persistent_spans, persistent_steps, source,
};
use dynofa_kernels::{DEFAULT_SEED, SupernetWeights, goldens};

type LaunchFn = unsafe extern "C" fn(*const c_char, *const u32, *const u32, u32, *const *mut c_void) -> c_int;
type ReverseFn = unsafe extern "C" fn(c_int);
type ReadOnlyFn = unsafe extern "C" fn(*const c_void, usize);

/// The emulator's entry points.
struct Emulator {
    launch: LaunchFn,
    reverse: ReverseFn,
    read_only: ReadOnlyFn,
}

/// The emulator, compiled once for all tests; a test holds it while it runs (its state is global).
/// `None` (after saying so) without a C++ compiler.
fn emulator() -> Option<MutexGuard<'static, Emulator>> {
    static EMULATOR: OnceLock<Option<Mutex<Emulator>>> = OnceLock::new();
    let emu = EMULATOR.get_or_init(|| compile(tempfile::tempdir().unwrap().path()).map(Mutex::new)).as_ref()?;
    Some(emu.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Compile the emulator into `dir` and load it; `None` (after saying so) without a C++ compiler.
fn compile(dir: &Path) -> Option<Emulator> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&cxx).arg("--version").output().is_err() {
        println!("skipped: no C++ compiler (`{cxx}`; set CXX) to build the kernels' host emulation");
        return None;
    }
    std::fs::write(dir.join("emulate.h"), EMULATE_H).unwrap();
    let tu = format!("#include \"emulate.h\"\n{}\nDYNOFA_EMU_ENTRY\n", source());
    std::fs::write(dir.join("emulated.cpp"), tu).unwrap();
    let lib = dir.join("libdynofa_emulated.so");
    let out = Command::new(&cxx)
        .args(["-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas"])
        // float4 loads read float buffers (as CUDA allows).
        .args(["-fno-strict-aliasing", "-o"])
        .arg(&lib)
        .arg(dir.join("emulated.cpp"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{cxx} failed on the kernels:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: a library this test just built; its symbol has the LaunchFn signature (emulate.h).
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
        assert!(!handle.is_null(), "dlopen {}", lib.display());
        let sym = |name: &std::ffi::CStr| {
            let sym = libc::dlsym(handle, name.as_ptr());
            assert!(!sym.is_null(), "{name:?} not exported");
            sym
        };
        Some(Emulator {
            launch: std::mem::transmute::<*mut c_void, LaunchFn>(sym(c"dynofa_emu_launch")),
            reverse: std::mem::transmute::<*mut c_void, ReverseFn>(sym(c"dynofa_emu_reverse")),
            read_only: std::mem::transmute::<*mut c_void, ReadOnlyFn>(sym(c"dynofa_emu_read_only")),
        })
    }
}

/// Which alternative of each step of a plan to run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pick {
    /// The plan's own (GpuImage::plan).
    First,
    /// What GpuEngine's measurement may pick instead: the one the plan rates slowest of those
    /// with one of the kernels that only measurement picks on an H100 ([`OTHERS`]), else of all.
    Others,
    /// The last alternative with this kernel of each step that has one (for
    /// [`Kernel::PointwiseKSplit`]: two groups where the tiles outnumber the multiprocessors, else
    /// split across blocks where the small tiles split, else the whole k in a block), else the
    /// plan's.
    Prefer(Kernel),
}

/// Kernels that only measurement picks on an H100: the fused expansion and depthwise layer, and
/// the 16-pixel warps kernel on larger maps.
const OTHERS: [Kernel; 2] = [Kernel::ExpandDepthwise, Kernel::PointwiseWarps16];

/// How a plan runs: launch by launch (a graph's nodes), or every launch in one cooperative launch
/// of `blocks` blocks with `shared` bytes of dynamic shared memory and its barrier ordered by
/// `order` (the persistent kernel).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Driver {
    Launches,
    Persistent { blocks: u32, shared: u32, order: BarrierOrder },
}

/// Launch `kernel` in the emulator with `shared` bytes of dynamic shared memory and these argument
/// slots; `read_only` is what no launch writes (the weights and BN), where the kernels' `ld_w`
/// must read (emulate.h checks it).
fn launch(
    emu: &Emulator,
    kernel: &str,
    grid: [u32; 3],
    block: [u32; 3],
    shared: u32,
    mut slots: Vec<u64>,
    read_only: &[&[f32]],
) -> c_int {
    let params: Vec<*mut c_void> = slots.iter_mut().map(|s| s as *mut u64 as *mut c_void).collect();
    let name = CString::new(kernel).unwrap();
    // SAFETY: the ranges are live slices, read only while this call runs; the callers' slots follow
    // the kernel's signature, their pointers into buffers that outlive the call (gpu::tests checks
    // that every plan's lie inside them).
    unsafe {
        (emu.read_only)(std::ptr::null(), 0);
        for r in read_only {
            (emu.read_only)(r.as_ptr().cast(), std::mem::size_of_val(*r));
        }
        (emu.launch)(name.as_ptr(), grid.as_ptr(), block.as_ptr(), shared, params.as_ptr())
    }
}

/// Run `g`'s plan for `target` on its input, each step's alternative picked by `pick`, driven by
/// `driver`; the logits and the plan's launches.
fn run_picked(
    emu: &Emulator,
    g: &goldens::Golden,
    target: Target,
    pick: Pick,
    driver: Driver,
) -> (Vec<f32>, Vec<Launch>) {
    let weights = SupernetWeights::seeded(g.net, DEFAULT_SEED);
    let image = GpuImage::new(&weights);
    let table = g.bn.as_ref().map(|p| weights.load_bn_statistics(p, &g.config).unwrap());
    let mut bn = bn_image(&weights, table.as_ref());
    let mut data = image.data.clone();
    let mut work: Vec<(Buffer, Vec<f32>)> = Buffer::WORK.iter().map(|&b| (b, vec![0.0; b.len(&g.net)])).collect();
    work.iter_mut().find(|(b, _)| *b == Buffer::Input).unwrap().1[..g.input.len()].copy_from_slice(&g.input);
    let bases: Vec<(Buffer, u64)> = [(Buffer::Weights, data.as_mut_ptr() as u64), (Buffer::Bn, bn.as_mut_ptr() as u64)]
        .into_iter()
        .chain(work.iter_mut().map(|(b, v)| (*b, v.as_mut_ptr() as u64)))
        .collect();
    let steps = image.steps(&g.config, target);
    let plan: Vec<Launch> = steps
        .into_iter()
        .flat_map(|mut s| match pick {
            Pick::First => s.alternatives.swap_remove(0),
            Pick::Others => {
                let at = s.alternatives.iter().rposition(|a| a.iter().any(|l| OTHERS.contains(&l.kernel)));
                s.alternatives.swap_remove(at.unwrap_or(s.alternatives.len() - 1))
            }
            Pick::Prefer(kernel) => {
                let at = s.alternatives.iter().rposition(|a| a.iter().any(|l| l.kernel == kernel));
                s.alternatives.swap_remove(at.unwrap_or(0))
            }
        })
        .collect();
    let base = |b| bases.iter().find(|(k, _)| *k == b).unwrap().1;
    match driver {
        Driver::Launches => {
            for l in &plan {
                let rc = launch(emu, l.kernel.name(), l.grid, l.block, 0, l.slots(base), &[&data, &bn]);
                assert_eq!(rc, 0, "{}: {:?} grid {:?} block {:?} failed ({rc})", g.name, l.kernel, l.grid, l.block);
            }
        }
        Driver::Persistent { blocks, shared, order } => {
            let table = persistent_steps(&plan, base);
            let mut arrived = [0u32; 2];
            let mut trace = vec![0u64; plan.len() * blocks as usize * 2];
            let slots = [
                table.as_ptr() as u64,
                plan.len() as u64,
                arrived.as_mut_ptr() as u64,
                trace.as_mut_ptr() as u64,
                order.slot(),
            ];
            let (grid, block) = ([blocks, 1, 1], [PERSISTENT_THREADS, 1, 1]);
            let rc = launch(emu, PERSISTENT, grid, block, shared, slots.into(), &[&data, &bn]);
            assert_eq!(rc, 0, "{}: the persistent kernel on {blocks} blocks failed ({rc})", g.name);
            assert_eq!(arrived, [0, 0], "{}: the persistent kernel left its barrier's counters set", g.name);
            check_trace(&trace, plan.len(), blocks as usize);
        }
    }
    let tickets = &work.iter().find(|(b, _)| *b == Buffer::Tickets).unwrap().1;
    assert!(tickets.iter().all(|&t| t.to_bits() == 0), "{}: a split launch left a ticket counter set", g.name);
    (work.into_iter().find(|(b, _)| *b == Buffer::Logits).unwrap().1, plan)
}

#[test]
fn emulated_kernels_match_the_goldens() {
    let Some(emu) = emulator() else { return };
    // The smallest cases of each width (emulation runs a few million fibers per large frame), one
    // with a sub-network's own BN statistics, kernels 3, 5 and 7 and SE with several tiles. Plans
    // for an H100's 132 multiprocessors (the warps kernels for the late layers, DepthwiseRegion);
    // for a Xavier NX's 6, w10_mid_bn with them and without them (depthwise tiles of 32 runs);
    // w12_max_r160 for the H100 without them (k split over blocks).
    let wanted = ["w12_min", "w10_min", "w10_mid_bn", "w10_random3", "w12_max_r160"];
    let cases: Vec<_> = goldens::load().unwrap().into_iter().filter(|g| wanted.contains(&g.name.as_str())).collect();
    assert_eq!(cases.len(), wanted.len(), "golden cases missing");
    let case = |name: &str| cases.iter().find(|g| g.name == name).unwrap();
    let old = Target::basic(132);
    let first = |g, target| (g, target, Pick::First);
    let runs = cases.iter().map(|g| first(g, Target::new(132))).chain([
        first(case("w10_mid_bn"), Target::new(6)),
        first(case("w10_mid_bn"), Target { sms: 6, ..old }),
        first(case("w12_max_r160"), old),
        // Alternatives that a measurement may pick.
        (case("w12_min"), Target::new(132), Pick::Others),
        (case("w10_mid_bn"), Target::new(132), Pick::Others),
        (case("w12_max_r160"), Target::new(132), Pick::Others),
        (case("w12_min"), Target::new(132), Pick::Prefer(Kernel::PointwiseKSplit)),
        (case("w10_mid_bn"), Target::new(132), Pick::Prefer(Kernel::PointwiseKSplit)),
        (case("w12_max_r160"), Target::new(132), Pick::Prefer(Kernel::PointwiseKSplit)),
        // The tensor cores: eight warps on a tile, or four on a slice of a split k.
        (case("w12_min"), Target::new(132), Pick::Prefer(Kernel::PointwiseMma)),
        (case("w10_mid_bn"), Target::new(132), Pick::Prefer(Kernel::PointwiseMma)),
        (case("w12_max_r160"), Target::new(132), Pick::Prefer(Kernel::PointwiseMma)),
        // The layers that PointwiseKSplit took from the warps kernel (the head's pool among them).
        (case("w12_min"), Target::new(132), Pick::Prefer(Kernel::PointwiseWarps)),
        (case("w12_max_r160"), Target::new(132), Pick::Prefer(Kernel::PointwiseWarps)),
        // The first unit's depthwise layers and projections fused: every kernel size and stride,
        // 24 and 32 output channels, maps of whole tiles and of part ones (w10_random3's 34x34).
        (case("w12_min"), Target::new(132), Pick::Prefer(Kernel::DepthwiseProject)),
        (case("w10_mid_bn"), Target::new(132), Pick::Prefer(Kernel::DepthwiseProject)),
        (case("w12_max_r160"), Target::new(132), Pick::Prefer(Kernel::DepthwiseProject)),
        (case("w10_random3"), Target::new(132), Pick::Prefer(Kernel::DepthwiseProject)),
    ]);
    let mut failures = Vec::new();
    let mut launches = Vec::new();
    for (g, target, pick) in runs {
        let (logits, plan) = run_picked(&emu, g, target, pick, Driver::Launches);
        let err = g.error(&logits);
        println!("{} ({target:?}, {pick:?}): relative error {err:.2e}", g.name);
        if err.is_nan() || err > goldens::TOLERANCE {
            failures.push(format!("{} ({target:?}, {pick:?}): relative error {err:.3e}", g.name));
        }
        if pick != Pick::First {
            // Launches that the plan does not make ran.
            let own = GpuImage::new(&SupernetWeights::seeded(g.net, DEFAULT_SEED)).plan(&g.config, target);
            let other = plan.iter().filter(|l| !own.contains(l)).count();
            println!("{}: {other} of {} launches are not the plan's", g.name, plan.len());
            assert!(other > 0, "{}: no step had an alternative", g.name);
        }
        launches.extend(plan);
    }
    assert!(failures.is_empty(), "emulated GPU kernels differ from ofa:\n{}", failures.join("\n"));
    // What the runs covered: depthwise tiles of the fewest and the most runs, every kernel size
    // with both strides, both pointwise tilings, with and without k split, both PointwiseWarps
    // kernels with a gate, a residual and the head's pool, and with fewer input channels than the
    // warps hold; the fused kernels.
    for runs in [8, 32] {
        assert!(
            launches.iter().any(|l| l.kernel == Kernel::Depthwise && l.args[8] == Arg::Int(runs)),
            "no depthwise launch with tiles of {runs} runs ran"
        );
    }
    for kernel in [Kernel::Depthwise, Kernel::DepthwiseRegion, Kernel::DepthwiseProject] {
        for (k, stride) in [3, 5, 7].into_iter().flat_map(|k| [(k, 1), (k, 2)]) {
            assert!(
                launches.iter().any(|l| l.kernel == kernel && l.args[5..7] == [Arg::Int(k), Arg::Int(stride)]),
                "no {kernel:?} launch with kernel {k} and stride {stride} ran"
            );
        }
    }
    for (kernel, split) in [(Kernel::Pointwise, false), (Kernel::PointwiseSmall, false), (Kernel::PointwiseSmall, true)]
    {
        assert!(
            launches.iter().any(|l| l.kernel == kernel && (l.grid[2] > 1) == split),
            "no {kernel:?} launch with split = {split} ran"
        );
    }
    assert!(
        launches.iter().any(|l| l.kernel == Kernel::PointwiseKSplit && l.grid[2] > 1),
        "no PointwiseKSplit launch split k across blocks"
    );
    for groups in [PWK_KS, PWK_FEW] {
        assert!(
            launches.iter().any(|l| l.kernel == Kernel::PointwiseKSplit && l.block[0] == groups * 128),
            "no PointwiseKSplit launch of {groups} groups ran"
        );
    }
    assert!(
        launches.iter().any(|l| l.kernel == Kernel::PointwiseKSplit
            && matches!(l.args[13], Arg::Int(kc) if kc % (PWK_KS as i32 * 16) != 0)),
        "no PointwiseKSplit launch left its last group a part step or none (16: a k step)"
    );
    for groups in [1, PWM_GROUPS] {
        assert!(
            launches.iter().any(|l| l.kernel == Kernel::PointwiseMma && l.block[0] == groups * 128),
            "no PointwiseMma launch of {groups} groups ran"
        );
    }
    assert!(
        launches.iter().any(|l| l.kernel == Kernel::PointwiseMma && l.grid[2] > 1),
        "no PointwiseMma launch split k across blocks"
    );
    for kernel in [Kernel::PointwiseWarps, Kernel::PointwiseWarps16, Kernel::PointwiseKSplit, Kernel::PointwiseMma] {
        for (what, at) in [("a gate", 9), ("a residual", 10), ("the pool", 12)] {
            assert!(
                launches.iter().any(|l| l.kernel == kernel && l.args[at] != Arg::Null),
                "no {kernel:?} launch with {what} ran"
            );
        }
    }
    // The fused expansion and depthwise layer: every kernel size and stride, and with SE sums.
    let fused: Vec<&Launch> = launches.iter().filter(|l| l.kernel == Kernel::ExpandDepthwise).collect();
    for (k, stride) in [3, 5, 7].into_iter().flat_map(|k| [(k, 1), (k, 2)]) {
        assert!(
            fused.iter().any(|l| l.args[11..13] == [Arg::Int(k), Arg::Int(stride)]),
            "no ExpandDepthwise launch with kernel {k} and stride {stride} ran"
        );
    }
    assert!(fused.iter().any(|l| l.args.last() != Some(&Arg::Null)), "no ExpandDepthwise launch with SE sums ran");
    // The fused depthwise layer and projection (every kernel size and stride: above), with and
    // without the residual, fewer output channels than lanes, and part tiles.
    let dp: Vec<&Launch> = launches.iter().filter(|l| l.kernel == Kernel::DepthwiseProject).collect();
    assert!(dp.iter().any(|l| l.args[17] == Arg::Null) && dp.iter().any(|l| l.args[17] != Arg::Null));
    assert!(dp.iter().any(|l| l.args[13] == Arg::Int(24)), "no DepthwiseProject launch of 24 channels ran");
    assert!(
        dp.iter().any(|l| matches!(l.args[7], Arg::Int(osize) if osize % 8 != 0)),
        "no DepthwiseProject launch with part tiles ran"
    );
    // The fused stem and first block, for both widths' channels (24 and 16).
    for c in [24, 16] {
        assert!(
            launches.iter().any(|l| l.kernel == Kernel::StemBlock && l.args[5] == Arg::Int(c)),
            "no StemBlock launch with {c} channels ran"
        );
    }
    let warps: Vec<&Launch> = launches.iter().filter(|l| l.kernel == Kernel::PointwiseWarps).collect();
    let n = warps.len();
    assert!(
        warps
            .iter()
            .any(|l| matches!((l.args[2], l.args[13]), (Arg::Int(k), Arg::Int(kc)) if k < kc * l.block[1] as i32)),
        "no PointwiseWarps launch with idle weight registers ran ({n} ran)"
    );
}

#[test]
fn emulated_results_do_not_depend_on_the_order_of_blocks_or_threads() {
    let Some(emu) = emulator() else { return };
    let g = goldens::load().unwrap().into_iter().find(|g| g.name == "w12_min").expect("golden w12_min");
    // With and without the latency-shaped and fused kernels: the split launches' last blocks, the
    // warps' sums, the region tiles' SE sums; and every barrier, which a thread order that runs
    // a reader before its writer would expose.
    let old = Target::basic(132);
    for (target, pick) in [
        (Target::new(132), Pick::First),
        (old, Pick::First),
        (Target::new(132), Pick::Prefer(Kernel::PointwiseKSplit)),
        (Target::new(132), Pick::Prefer(Kernel::DepthwiseProject)),
        (Target::new(132), Pick::Prefer(Kernel::PointwiseMma)),
    ] {
        let run = |emu: &Emulator, g: &goldens::Golden, target| run_picked(emu, g, target, pick, Driver::Launches);
        let (forward, plan) = run(&emu, &g, target);
        let kernels: Vec<Kernel> = plan.iter().map(|l| l.kernel).collect();
        assert!(
            plan.iter().any(|l| l.grid[2] > 1) || kernels.contains(&Kernel::PointwiseWarps),
            "{target:?}: the plan neither splits k nor uses PointwiseWarps"
        );
        for (mode, what) in [(1, "the blocks"), (2, "each block's threads")] {
            // SAFETY: sets a flag of the emulator.
            unsafe { (emu.reverse)(mode) };
            let (reverse, _) = run(&emu, &g, target);
            // SAFETY: as above.
            unsafe { (emu.reverse)(0) };
            let differ = forward.iter().zip(&reverse).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{target:?}: {differ} logits differ when {what} run last first");
        }
    }
}

/// The persistent kernel's trace (the emulation's clock ticks once per read): every block started
/// each launch after every block arrived from the one before (the barrier), and arrived after it
/// started; the spans add up to the whole run.
fn check_trace(trace: &[u64], launches: usize, blocks: usize) {
    let at = |i: usize, b: usize, what: usize| trace[(i * blocks + b) * 2 + what];
    for i in 0..launches {
        for b in 0..blocks {
            assert!(
                at(i, b, 0) != 0 && at(i, b, 0) < at(i, b, 1),
                "launch {i}, block {b}: {:?}",
                [0, 1].map(|w| at(i, b, w))
            );
            if i > 0 {
                let last = (0..blocks).map(|c| at(i - 1, c, 1)).max().unwrap();
                assert!(at(i, b, 0) > last, "launch {i}: block {b} started before every block arrived from the last");
            }
        }
    }
    let spans = persistent_spans(trace, launches, blocks);
    let whole =
        (0..blocks).map(|b| at(launches - 1, b, 1)).max().unwrap() - (0..blocks).map(|b| at(0, b, 0)).min().unwrap();
    let sum: f64 = spans.iter().map(|s| s.launch_ns + s.barrier_ns).sum();
    assert_eq!(sum, whole as f64, "the spans do not add up to the run");
}

#[test]
fn the_persistent_kernel_computes_what_the_launches_do() {
    let Some(emu) = emulator() else { return };
    let cases = goldens::load().unwrap();
    let case = |name: &str| cases.iter().find(|g| g.name == name).unwrap();
    let old = Target::basic(6);
    // The H100's plan (the fused stem, both warps kernels with 512-thread blocks beside 256- and
    // 128-thread ones, region tiles), the fused expansion; a Xavier NX's plan without them (k
    // split over blocks: tickets across the persistent blocks). Blocks: more launch blocks than
    // persistent ones, and one persistent block running them all. Dynamic shared memory as the
    // engine gives it on an H100 (four 128-thread or two 256-thread launch blocks at once in each
    // persistent one) and a Xavier (less; 96 KiB a block, about 19 KiB of them the kernel's own),
    // and one launch block's (four 128-thread ones, else one at a time). Either barrier order.
    let xavier = persistent_shared(96 * 1024 - 19_000).unwrap();
    let (fences, release_acquire) = (BarrierOrder::Fences, BarrierOrder::ReleaseAcquire);
    let runs = [
        (case("w12_min"), Target::new(132), Pick::First, 3, PERSISTENT_SHARED, fences),
        (case("w12_min"), Target::new(132), Pick::Others, 2, PERSISTENT_BODY_SHARED, release_acquire),
        (case("w10_mid_bn"), old, Pick::First, 3, xavier, fences),
        (case("w10_min"), Target::new(132), Pick::First, 1, PERSISTENT_SHARED, release_acquire),
        (
            case("w12_min"),
            Target::new(132),
            Pick::Prefer(Kernel::PointwiseKSplit),
            2,
            PERSISTENT_SHARED,
            release_acquire,
        ),
        (case("w12_min"), Target::new(132), Pick::Prefer(Kernel::DepthwiseProject), 2, xavier, release_acquire),
        (case("w12_min"), Target::new(132), Pick::Prefer(Kernel::PointwiseMma), 2, PERSISTENT_SHARED, fences),
    ];
    let mut kernels = Vec::new();
    for (g, target, pick, blocks, shared, order) in runs {
        let (launches, plan) = run_picked(&emu, g, target, pick, Driver::Launches);
        let (persistent, _) = run_picked(&emu, g, target, pick, Driver::Persistent { blocks, shared, order });
        let differ = launches.iter().zip(&persistent).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        println!(
            "{} ({target:?}, {pick:?}, {blocks} blocks, {shared} B, {order:?}): {} launches, {differ} logits differ",
            g.name,
            plan.len()
        );
        assert_eq!(differ, 0, "{}: the persistent kernel's logits differ from the launches'", g.name);
        kernels.extend(plan.iter().map(|l| l.kernel));
    }
    for k in Kernel::ALL {
        assert!(kernels.contains(&k), "the persistent kernel never ran {k:?}");
    }
    // The order of blocks and threads (each barrier, each arrival).
    let g = case("w12_min");
    let (forward, _) = run_picked(
        &emu,
        g,
        Target::new(132),
        Pick::First,
        Driver::Persistent { blocks: 3, shared: PERSISTENT_SHARED, order: BarrierOrder::Fences },
    );
    for mode in [1, 2] {
        // SAFETY: sets a flag of the emulator.
        unsafe { (emu.reverse)(mode) };
        let (reverse, _) = run_picked(
            &emu,
            g,
            Target::new(132),
            Pick::First,
            Driver::Persistent { blocks: 3, shared: PERSISTENT_SHARED, order: BarrierOrder::Fences },
        );
        // SAFETY: as above.
        unsafe { (emu.reverse)(0) };
        assert!(
            forward.iter().zip(&reverse).all(|(a, b)| a.to_bits() == b.to_bits()),
            "reversed ({mode}): logits differ"
        );
    }
}

/// A host buffer of `len` floats from `data` whose first float is `skew` floats past a 16-byte
/// boundary: the GEMM tiles store a thread's adjacent outputs in one vector access only where a
/// row is aligned, and must store them one by one elsewhere.
struct Skewed {
    buf: Vec<f32>,
    at: usize,
}

impl Skewed {
    fn new(data: &[f32], skew: usize) -> Skewed {
        let mut buf = vec![0.0f32; data.len() + 8];
        let at = (16 - buf.as_ptr() as usize % 16) % 16 / 4 + skew;
        buf[at..at + data.len()].copy_from_slice(data);
        Skewed { buf, at }
    }
    fn ptr(&mut self) -> u64 {
        self.buf[self.at..].as_mut_ptr() as u64
    }
    fn get(&self, len: usize) -> &[f32] {
        &self.buf[self.at..self.at + len]
    }
}

/// Each GEMM tiling on shapes the plans do not make, against a sum in f64: `n` not a multiple of a
/// thread's columns, output and residual a float off alignment (where a thread's adjacent outputs
/// go one by one), aligned ones (one vector access), a part k step (of 16 channels, and of 8 for
/// the tensor cores' warps, some of which have none), k split over two blocks, and the SE gate.
#[test]
fn the_gemm_tiles_store_any_width_and_alignment() {
    let Some(emu) = emulator() else { return };
    let (m, k) = (37usize, 43usize);
    let value = |i: usize, salt: f32| (i as f32 * 0.37 + salt).sin() * 0.5;
    let tilings = [
        ("dynofa_pointwise", 64, 64, 256),
        ("dynofa_pointwise_small", 16, 32, 128),
        ("dynofa_pointwise_ksplit", 16, 32, 128 * PWK_KS),
        ("dynofa_pointwise_ksplit", 16, 32, 128 * PWK_FEW),
        ("dynofa_pointwise_mma", 16, 32, 128),
        ("dynofa_pointwise_mma", 16, 32, 128 * PWM_GROUPS),
    ];
    for (kernel, bm, bn, threads) in tilings {
        for n in [30usize, 31, 32] {
            for (skew, slices, gated) in [(0, 1, false), (1, 1, true), (0, 2, true), (1, 2, false)] {
                let ldw = n + 3;
                let a: Vec<f32> = (0..m * k).map(|i| value(i, 0.1)).collect();
                let w: Vec<f32> = (0..k * ldw).map(|i| value(i, 0.7)).collect();
                let scale: Vec<f32> = (0..n).map(|i| 1.0 + value(i, 0.3)).collect();
                let shift: Vec<f32> = (0..n).map(|i| value(i, 0.9)).collect();
                let gate: Vec<f32> = (0..k).map(|i| 0.5 + value(i, 0.5)).collect();
                let res: Vec<f32> = (0..m * n).map(|i| value(i, 1.3)).collect();
                let kc = k.div_ceil(slices).div_ceil(16) * 16;
                let gz = k.div_ceil(kc) as u32;
                let tiles = n.div_ceil(bn) * m.div_ceil(bm);
                let (mut res, mut out) = (Skewed::new(&res, skew), Skewed::new(&vec![0.0; m * n], skew));
                let mut split = Skewed::new(&vec![0.0; gz as usize * m * n], skew);
                let mut tickets = vec![0u32; tiles];
                let ptr = |v: &[f32]| v.as_ptr() as u64;
                let slots = vec![
                    ptr(&a),
                    m as u64,
                    k as u64,
                    ptr(&w),
                    ldw as u64,
                    n as u64,
                    ptr(&scale),
                    ptr(&shift),
                    1, // ReLU
                    if gated { ptr(&gate) } else { 0 },
                    res.ptr(),
                    out.ptr(),
                    0, // no pool
                    kc as u64,
                    split.ptr(),
                    tickets.as_mut_ptr() as u64,
                ];
                let grid = [n.div_ceil(bn) as u32, m.div_ceil(bm) as u32, gz];
                let read_only: [&[f32]; 3] = [&w, &scale, &shift];
                assert_eq!(launch(&emu, kernel, grid, [threads, 1, 1], 0, slots, &read_only), 0, "{kernel} failed");
                let mut worst = 0.0f64;
                for p in 0..m {
                    for o in 0..n {
                        let g = |i: usize| if gated { gate[i] as f64 } else { 1.0 };
                        let dot: f64 = (0..k).map(|i| a[p * k + i] as f64 * g(i) * w[i * ldw + o] as f64).sum();
                        let want =
                            (dot * scale[o] as f64 + shift[o] as f64).max(0.0) + res.get(m * n)[p * n + o] as f64;
                        worst = worst.max((out.get(m * n)[p * n + o] as f64 - want).abs());
                    }
                }
                let case = format!("{kernel} ({threads} threads), n {n}, skew {skew}, {gz} slices, gate {gated}");
                assert!(worst <= 1e-5, "{case}: off by {worst:e}");
                assert!(tickets.iter().all(|&t| t == 0), "{case}: a ticket counter left set");
            }
        }
    }
}

/// The emulation's check of the kernels' loads fails a launch whose weights (`ld_w`) lie outside
/// what it was told no launch writes: the plans' launches pass it only because the kernels load
/// weights with `ld_w` and nothing else (emulate.h).
#[test]
fn a_weight_load_outside_the_weights_fails_the_launch() {
    let Some(emu) = emulator() else { return };
    let (m, k, n) = (16usize, 16usize, 32usize);
    let a = vec![0.5f32; m * k];
    let w = vec![0.25f32; k * n];
    let (scale, shift) = (vec![1.0f32; n], vec![0.0f32; n]);
    let mut out = vec![0.0f32; m * n];
    let ptr = |v: &[f32]| v.as_ptr() as u64;
    // a, m, k, w, ldw, n, scale, shift, act (identity), gate, res, out, pool, kc (k: no split),
    // split, tickets.
    let slots = |out: &mut [f32]| {
        let (m, k, n) = (m as u64, k as u64, n as u64);
        vec![ptr(&a), m, k, ptr(&w), n, n, ptr(&scale), ptr(&shift), 0, 0, 0, out.as_mut_ptr() as u64, 0, k, 0, 0]
    };
    let small = |out: &mut [f32], read_only: &[&[f32]]| {
        launch(&emu, "dynofa_pointwise_small", [1, 1, 1], [128, 1, 1], 0, slots(out), read_only)
    };
    assert_eq!(small(&mut out, &[&w, &scale, &shift]), 0);
    assert!(out.iter().all(|&v| v == 0.5 * 0.25 * k as f32), "{:?}", &out[..4]);
    assert_eq!(small(&mut out, &[&w, &scale]), -4, "BN's shift was not among the weights");
    assert_eq!(small(&mut out, &[]), -4, "nothing was");
}
