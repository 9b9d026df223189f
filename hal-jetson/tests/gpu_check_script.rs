//! `scripts/gpu/check.py`, the GPU check that runs where device time is scarce, end to end on stub
//! binaries: a staged folder whose `gpu-test`, `conformance`, `gpu-bench` and `dynofa` print what the real ones
//! print (the bench's line formats, `hal-jetson/benches/gpu.rs`) and write `launches.csv`. Checks
//! the summary it derives: the table, the variants' lines, the verdicts, the fused kernels against
//! the launches they replace, where each plan's time goes, what the 5x bar leaves each launch, the
//! launches an earlier run timed too, `infer`'s halves, and the exit status; and
//! `scripts/gpu/sass.py`'s reading of cuobjdump's listing. Says it skipped without `python3`.

use std::path::Path;
use std::process::Command;

/// What `gpu-bench` prints for the three sub-networks: the default engine 0.50 / 0.30 / 0.18 ms,
/// without fused kernels 10% to 40% slower, cached input faster on max only, the persistent kernel
/// slower on max only.
const BENCH: &str = "\
device \"Stub GPU\" arch compute_90 multiprocessors 132 compile_s=0.100 cached=false mapped (input, logits)=(false, true)
programmatic dependent launch: true
dynofa-cuda max median_ms=0.5000
dynofa-cuda-kernels max gpu_us=420.0
dynofa-cuda mid median_ms=0.3000
dynofa-cuda-kernels mid gpu_us=250.0
dynofa-cuda min median_ms=0.1800
dynofa-cuda-kernels min gpu_us=140.0
dynofa-cuda-parts max stage_us=20.1 run_us=480.2
dynofa-cuda-parts mid stage_us=15.0 run_us=285.0
dynofa-cuda-parts min stage_us=10.0 run_us=170.0
launch floor: 0.81 us per graph node that does nothing
grid barrier: 0.70 us per barrier across 132 blocks
grid barrier (fences): 0.95 us per barrier across 132 blocks
switch median_us=0.117 p99_us=0.138 max_us=16.2
dynofa-cuda-cachedinput max median_ms=0.4800
dynofa-cuda-cachedinput mid median_ms=0.3000
dynofa-cuda-cachedinput min median_ms=0.1800
dynofa-cuda-parts-cachedinput max stage_us=10.1 run_us=480.2
dynofa-cuda-nofused max median_ms=0.5500
dynofa-cuda-nofused-kernels max gpu_us=470.0
dynofa-cuda-nofused mid median_ms=0.3600
dynofa-cuda-nofused-kernels mid gpu_us=300.0
dynofa-cuda-nofused min median_ms=0.2500
dynofa-cuda-nofused-kernels min gpu_us=200.0
tuning max: 40 steps measured, 7 changed, 300.0 us planned -> 280.0 us picked, 0.05 s
dynofa-cuda-tuned max median_ms=0.4800
dynofa-cuda-tuned-kernels max gpu_us=400.0
dynofa-cuda-tuned-nomma max median_ms=0.4900
dynofa-cuda-tuned-nomma-kernels max gpu_us=410.0
dynofa-cuda-persistent max median_ms=0.6000
dynofa-cuda-persistent mid median_ms=0.2500
dynofa-cuda-persistent min median_ms=0.1000
dynofa-cuda-parts-persistent min stage_us=10.0 run_us=90.0
dynofa-cuda-persistent-fences min median_ms=0.0980
persistent-trace-fences min: 46 launches, 70.0 us from the first start to the last arrival: launches 40.0 us, barriers 30.0 us (median 0.65 us); dynofa_matvec 12x 10.0 us
tuning-persistent-tuned min: graph 170.0 us with a node per launch, 95.0 us with the persistent kernel: the persistent kernel
dynofa-cuda-persistent-tuned min median_ms=0.0950
dynofa-cuda-parts-persistent-tuned min stage_us=10.0 run_us=85.0
persistent-trace min: 46 launches, 80.0 us from the first start to the last arrival: launches 40.0 us, barriers 40.0 us (median 0.90 us); dynofa_matvec 12x 10.0 us
";

/// What `dynofa run --backend cuda` prints (abridged).
const RUN: &str = "\
engine: cuda engine, \"Stub GPU\", compute_90 per model; weights: seeded
sub-networks: 9 on the gpu front, 0.210 ms at top-1 80.8% to 0.450 ms at 85.4%
summary: 10.0 s, 1 model on the cuda engine, dynofa's manager
  classifier: 30000 frames, deadlines met 97.0% (of 29990 counted), mean top-1 83.10%, 12 switches
trace: run-cuda.csv (30000 frames)
";

/// Rows of `launches.csv`: max's stem block and one fused expansion against the launches they
/// replace in the plan without fused kernels (3.0 us against 10.0, 4.0 against 6.0), a
/// `PointwiseKSplit` layer against the same layer in the plan without it (4.0 us against 6.0),
/// and what tune changed: in max, that layer's blocks of 512 threads for 256 (3.5 us) and the warps
/// kernel's launch for the small tiles (2.5 us against 2.0); in min, a fused launch for two (3.9
/// us against 4.2); in mid, launches that do not line up.
const LAUNCHES: &str = "\
subnet,index,kernel,grid,block,ints,model_us,gpu_us
max-tuned,0,dynofa_stem_block,196x1x1,256x1x1,224 112,,3.00
max-tuned,1,dynofa_expand_depthwise,5x98x1,32x8x1,112 24,,4.00
max-tuned,2,dynofa_pointwise_small,5x13x4,128x1x1,196 816,8.00,2.50
max-tuned,3,dynofa_pointwise_ksplit,36x3x1,256x1x1,36 192,,3.50
min,0,dynofa_stem_block,100x1x1,256x1x1,160 80,,2.00
min,1,dynofa_pointwise_small,3x100x1,128x1x1,1600 32,2.63,2.30
min,2,dynofa_depthwise_region,3x25x1,32x8x1,40 96,,1.90
min-tuned,0,dynofa_stem_block,100x1x1,256x1x1,160 80,,2.00
min-tuned,1,dynofa_expand_depthwise,3x25x1,32x8x1,40 32,,3.90
mid,0,dynofa_matvec,1x1x1,256x1x1,1 0,,2.00
mid-tuned,0,dynofa_matvec,1x1x1,256x1x1,1 0,,2.00
mid-tuned,1,dynofa_matvec,1x1x1,256x1x1,1 0,,2.00
max,0,dynofa_stem_block,196x1x1,256x1x1,224 112,,3.00
max,1,dynofa_expand_depthwise,5x98x1,32x8x1,112 24,,4.00
max,2,dynofa_pointwise_warps,5x49x1,32x16x1,196 816,1.00,2.00
max,3,dynofa_pointwise_ksplit,36x3x1,512x1x1,36 192,4.10,4.00
max-noksplit,0,dynofa_stem_block,196x1x1,256x1x1,224 112,,3.00
max-noksplit,1,dynofa_expand_depthwise,5x98x1,32x8x1,112 24,,4.00
max-noksplit,2,dynofa_pointwise_warps,5x49x1,32x16x1,196 816,1.00,2.00
max-noksplit,3,dynofa_pointwise_small,36x3x1,128x1x1,36 192,5.00,6.00
max-nofused,0,dynofa_stem,294x1x1,256x1x1,224 112,,2.00
max-nofused,1,dynofa_depthwise,1x392x1,32x8x1,112 24,,4.00
max-nofused,2,dynofa_pointwise_small,1x784x1,128x1x1,12544 24,2.46,4.00
max-nofused,3,dynofa_pointwise,3x196x1,256x1x1,12544 24,10.92,3.00
max-nofused,4,dynofa_depthwise_region,5x98x1,32x8x1,112 144,,3.00
max-nofused,5,dynofa_pointwise_warps,5x49x1,32x16x1,196 816,1.00,2.00
max-nofused,6,dynofa_pointwise_ksplit,36x3x1,512x1x1,36 192,4.10,4.00
";

/// An earlier run's `launches.csv` for `--baseline`: max's stem block and `PointwiseKSplit` launch
/// with the same shapes as in `LAUNCHES` (4.0 and 5.0 us then), one with other arguments, which
/// is not the same launch.
const BASELINE: &str = "\
subnet,index,kernel,grid,block,ints,model_us,gpu_us
max,0,dynofa_stem_block,196x1x1,256x1x1,224 112,,4.00
max,1,dynofa_pointwise_ksplit,36x3x1,512x1x1,36 192,4.10,5.00
max,2,dynofa_pointwise_ksplit,36x3x1,512x1x1,36 96,4.10,9.00
";

fn stub(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
}

/// What `python3 -c program` prints, line by line, run in `scripts/gpu` (so that it can import
/// `check` and `sass`); `None`, after saying so, without `python3`.
fn python_lines(program: &str) -> Option<Vec<String>> {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("skipped: no python3 to run scripts/gpu");
        return None;
    }
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("scripts/gpu");
    let out = Command::new("python3").current_dir(&scripts).args(["-c", program]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

#[test]
fn check_py_summarises_the_bench() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("skipped: no python3 to run scripts/gpu/check.py");
        return;
    }
    let staged = tempfile::tempdir().unwrap();
    let dir = staged.path();
    stub(dir, "gpu-test", "echo 'gpu: ok'\n");
    // The suite's harness output with its CUDA tests passing.
    stub(
        dir,
        "conformance",
        "echo 'test cuda::clock_is_monotonic ... ok'\necho 'test result: ok. 11 passed; 0 failed'\n",
    );
    let launches = dir.join("launches.csv");
    std::fs::write(&launches, LAUNCHES).unwrap();
    // The bench writes --launches FILE: copy the canned rows there.
    let bench = format!(
        "while [ $# -gt 0 ]; do [ \"$1\" = --launches ] && cp '{}' \"$2\"; shift; done\ncat <<'EOF'\n{BENCH}EOF\n",
        launches.display()
    );
    stub(dir, "gpu-bench", &bench);
    // dynofa platform, gen-weights --width 1.2 --out FILE, run --backend cuda ..., and eval
    // --backend B ... --json FILE (the same counts from both engines).
    let eval = r#"{"subnets": [{"correct1": 3, "correct5": 8}, {"correct1": 4, "correct5": 8}]}"#;
    let files = format!(
        "while [ $# -gt 0 ]; do [ \"$1\" = --out ] && : > \"$2\"; [ \"$1\" = --json ] && echo '{eval}' > \"$2\"; shift; done\n"
    );
    let platform =
        "[ \"$1\" = platform ] && { echo 'cuda:     Stub GPU, compute 9.0, 132 multiprocessors, discrete'; exit 0; }";
    stub(dir, "dynofa", &format!("{platform}\n[ \"$1\" = run ] && {{ cat <<'EOF'\n{RUN}EOF\nexit 0; }}\n{files}"));
    let save = tempfile::tempdir().unwrap();
    let baseline = dir.join("baseline.csv");
    std::fs::write(&baseline, BASELINE).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("python3")
        .arg(root.join("scripts/gpu/check.py"))
        .arg(dir)
        .args(["--modes", "", "--save"])
        .arg(save.path())
        .arg("--baseline")
        .arg(&baseline)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check.py failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "correctness + allocation-free (gpu-test): ok",
        "HAL conformance suite, Linux platform, CPU and CUDA engines (conformance): ok, 11 passed",
        "switch (activate between captured graphs, host): median 0.117 us, p99 0.138 us, max 16.2 us; median <= 5 us: yes",
        "| max | 0.500 | 0.420 |",
        "| max (tuned) | 0.480 | 0.400 |",
        "| max (tuned-nomma) | 0.490 | 0.410 |",
        "the same without PointwiseMma (the tensor cores) among the alternatives (GpuOptions::pointwise_mma) (ms; \
         kernels alone): max 0.490 (0.410)",
        "| min (persistent) | 0.100 | n/a |",
        "| min (persistent-fences) | 0.098 | n/a |",
        "the same with the barrier ordered by fences rather than release/acquire atomics (GpuOptions::barrier) \
         (ms): min 0.098",
        "persistent-trace-fences min: 46 launches, 70.0 us from the first start to the last arrival: launches 40.0 us, \
         barriers 30.0 us (median 0.65 us); dynofa_matvec 12x 10.0 us",
        "| min (persistent-tuned) | 0.095 | n/a |",
        "each sub-network's graph the faster of a node per launch and the persistent kernel, measured at capture \
         with the layers' alternatives (GpuOptions::persistent and tune) (ms): min 0.095",
        "tuning-persistent-tuned min: graph 170.0 us with a node per launch, 95.0 us with the persistent kernel: \
         the persistent kernel",
        "dynofa's infer in halves (each sub-network's graph the faster of a node per launch and the persistent \
         kernel, measured at capture with the layers' alternatives (GpuOptions::persistent and tune)), host copy \
         into page-locked input + graph replay and wait (us): min 10.0 + 85.0",
        "every launch in one persistent kernel, barriers across the GPU between them (GpuOptions::persistent) \
         (ms): max 0.600, mid 0.250, min 0.100",
        "dynofa's infer in halves (every launch in one persistent kernel, barriers across the GPU between them \
         (GpuOptions::persistent)), host copy into page-locked input + graph replay and wait (us): min 10.0 + 90.0",
        "| min | 0.180 | 0.140 |",
        "without the fused kernels (StemBlock; ExpandDepthwise and DepthwiseProject are only tune's) (ms; kernels \
         alone): max 0.550 (0.470), \
         mid 0.360 (0.300), min 0.250 (0.200)",
        "cached (not write-combined) page-locked input (ms): max 0.480, mid 0.300, min 0.180",
        // Slower on all three: a verdict; cached input only faster on max: none.
        "slower than the defaults on max, mid and min (1.10x, 1.20x, 1.39x the time): without the fused kernels",
        "dynofa_pointwise_ksplit against the plans without it, each launch timed alone: max 1 layers 4.0 us vs \
         6.0 us (faster on 1)",
        "dynofa_stem_block against the 3 launches it replaces, each launch timed alone: max 1 x: 3.0 us vs 10.0 us \
         (faster on 1)",
        "dynofa_expand_depthwise against the 2 launches it replaces, each launch timed alone: max 1 x: 4.0 us vs 6.0 \
         us (faster on 1)",
        "dynofa's infer in halves, host copy into page-locked input + graph replay and wait (us): max 20.1 + 480.2, \
         mid 15.0 + 285.0, min 10.0 + 170.0",
        "dynofa's infer in halves (cached (not write-combined) page-locked input), host copy into page-locked input \
         + graph replay and wait (us): max 10.1 + 480.2",
        "tuning max: 40 steps measured, 7 changed",
        "each timed alone, then -> now: max dynofa_pointwise_ksplit 1x 5.0 -> 4.0 us (0.80x); max \
         dynofa_stem_block 1x 4.0 -> 3.0 us (0.75x)",
        "where max's 4 launches go, each timed alone (13.0 us): dynofa_expand_depthwise 1x 4.0 us (31%), \
         dynofa_pointwise_ksplit 1x 4.0 us (31%), dynofa_stem_block 1x 3.0 us (23%), dynofa_pointwise_warps 1x \
         2.0 us (15%)",
        "tune's picks against the default plans, each launch timed alone: max 2 changed layers 6.0 us vs 6.0 us \
         (faster on 1), 1x dynofa_pointwise_warps[512] -> dynofa_pointwise_small[128], 1x \
         dynofa_pointwise_ksplit[512] -> dynofa_pointwise_ksplit[256]; mid 2 launches 4.0 us vs the plan's 1 2.0 \
         us; min 1 changed layers 3.9 us vs 4.2 us (faster on 1), 1x \
         dynofa_pointwise_small[128]+dynofa_depthwise_region[256] -> dynofa_expand_depthwise[256]",
        "persistent-trace min: 46 launches, 80.0 us from the first start to the last arrival: launches 40.0 us, \
         barriers 40.0 us (median 0.90 us); dynofa_matvec 12x 10.0 us",
        "a graph node that does nothing: 0.81 us",
        "a barrier across the GPU (one block per multiprocessor: what the persistent kernel pays between launches): \
         0.70 us per barrier across 132 blocks",
        "the same ordered by fences rather than release/acquire atomics: 0.95 us per barrier across 132 blocks",
        "dynofa eval on the fixture images, (top-1, top-5) counts per sub-network: cpu [(3, 8), (4, 8)], cuda \
         [(3, 8), (4, 8)]; the same: yes",
        "dynofa run --backend cuda (the demo, 10 s): exit 0",
        "dynofa platform: cuda: Stub GPU, compute 9.0, 132 multiprocessors, discrete",
        "  sub-networks: 9 on the gpu front, 0.210 ms at top-1 80.8% to 0.450 ms at 85.4%",
        "  classifier: 30000 frames, deadlines met 97.0% (of 29990 counted), mean top-1 83.10%, 12 switches",
    ] {
        assert!(text.contains(line), "the summary lacks {line:?}:\n{text}");
    }
    assert!(!text.lines().any(|l| l.starts_with("faster than the defaults")), "no variant was faster on all:\n{text}");
    let summary = std::fs::read_to_string(save.path().join("summary.md")).unwrap();
    // It echoes the steps' output as they run, then the summary.
    assert!(text.trim_end().ends_with(summary.trim()), "summary.md is not what it printed last:\n{summary}");
}

#[test]
fn the_bar_budget_divides_what_the_bar_leaves_among_the_launches() {
    // max: the best PyTorch mode 1.5 ms, so the bar is 300 us; dynofa 0.6 ms of which 500 us
    // kernels, so 100 us outside them and 200 us left for 100 launches. mid has no PyTorch time,
    // min no plan: no line for either.
    let program = r#"
import check
launch = check.PlanLaunch("dynofa_matvec", 256, 5.0)
plans = {"max": [launch] * 100, "mid": [launch] * 10}
dynofa = {"max": 0.6, "mid": 0.3, "min": 0.2}
kernels = {"max": 500.0, "mid": 250.0, "min": 150.0}
torch_ms = {("eager", "max"): 6.0, ("graph", "max"): 1.5, ("graph", "min"): 0.5}
for floor in [2.0, None]:
    print("\n".join(check.bar_budgets(dynofa, kernels, torch_ms, plans, floor)))
"#;
    let Some(lines) = python_lines(program) else { return };
    let line = "the 5x bar for max: 300.0 us; outside the kernels 100.0 us; left 200.0 us for 100 launches, 2.00 us \
                each, against 5.00 us each now (kernels alone / launches)";
    assert_eq!(lines, [format!("{line}, an empty node 2.00 us"), line.to_string()]);
}

#[test]
fn the_conformance_verdict_names_failures_and_skips() {
    let program = r#"
import check
ok = "test result: ok. 11 passed; 0 failed"
print(check.conformance_verdict(0, ok))
print(check.conformance_verdict(0, "skipped: no CUDA driver (libcuda.so) on this machine\n" + ok))
print(check.conformance_verdict(101, "test cuda::runtime_paces_and_switches ... FAILED\ntest result: FAILED. 10 passed; 1 failed"))
print(check.conformance_verdict(0, ""))
"#;
    let Some(lines) = python_lines(program) else { return };
    assert_eq!(
        lines,
        [
            "ok, 11 passed",
            "ok, 11 passed, but the CUDA tests skipped: no CUDA driver (libcuda.so) on this machine",
            "FAILED (exit 101): cuda::runtime_paces_and_switches",
            "FAILED (exit 0)",
        ]
    );
}

/// `scripts/gpu/sass.py`'s reading of cuobjdump: the kernels, where each waits for the previous
/// kernel and after how many loads (how many of them read-only, how many from L2), its read-only
/// loads in all, each loop (a branch back) with its instruction count and opcodes (predicates
/// dropped, loads keeping their width), and no loop for a forward branch.
#[test]
fn the_sass_reader_counts_each_loops_instructions() {
    // Abridged cuobjdump -sass: a kernel that loads a read-only value and one from L2, waits for
    // the previous kernel (its fourth instruction), loads another read-only value, and whose loop
    // 0x0020..0x0070 has two shared loads of 64 bits, two multiply-adds (one predicated), an
    // address update and its branch; a forward branch after.
    let program = r#"
import sass
text = """
	code for sm_90
		Function : dynofa_stub
	.headerflags	@"EF_CUDA_SM90"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                     /* 0x00000a00ff017b82 */
                                                                              /* 0x000e220000000800 */
        /*0008*/                   LDG.E.CONSTANT R9, desc[UR4][R10.64] ;     /* 0x000000040a097981 */
        /*000a*/                   LDG.E.STRONG.GPU R8, desc[UR4][R12.64] ;   /* 0x000000040c087981 */
        /*000c*/                   ACQBULK ;                                  /* 0x00000000000079b8 */
        /*000e*/                   LDG.E.CONSTANT R11, desc[UR4][R14.64] ;    /* 0x000000040e0b7981 */
        /*0010*/                   MOV R2, RZ ;                               /* 0x000000ff00027202 */
        /*0020*/                   LDS.64 R4, [R3] ;                          /* 0x0000000003047984 */
        /*0030*/                   LDS.64 R6, [R3+0x8] ;                      /* 0x0000080003067984 */
        /*0040*/                   FFMA R2, R4, R6, R2 ;                      /* 0x0000000604027223 */
        /*0050*/               @P0 FFMA R2, R5, R7, R2 ;                      /* 0x0000000705020223 */
        /*0060*/                   IADD3 R3, R3, 0x10, RZ ;                   /* 0x0000001003037810 */
        /*0070*/              @!P1 BRA 0x20 ;                                 /* 0xfffffffc00009947 */
        /*0080*/                   BRA 0xa0 ;                                 /* 0x0000000000007947 */
        /*0090*/                   STG.E [R8.64], R2 ;                        /* 0x0000000208007986 */
        /*00a0*/                   EXIT ;                                     /* 0x000000000000794d */
"""
for name, instructions in sass.functions(text).items():
    print(name, len(instructions), sass.wait_point(instructions))
    for start, end, ops in sass.loops(instructions):
        print(sass.describe(start, end, ops))
"#;
    let Some(lines) = python_lines(program) else { return };
    assert_eq!(
        lines,
        ["dynofa_stub 15 (3, 2, 1, 1, 2)", "loop 0x20..0x70: 6 instructions: LDS.64 2, FFMA 2, IADD3 1, BRA 1"]
    );
}
