//! The CUDA engine on every golden case (both widths, with and without a sub-network's own BN
//! statistics): its logits against the CPU engine's and `ofa`'s (max |y - ref| / max |ref| <= 1e-4),
//! then 1,000 switches and inferences between captured sub-networks with zero host allocations;
//! all of it again with plans that do not use `PointwiseWarps`, with plans that do not use
//! `DepthwiseRegion`, with each layer's alternatives measured and the fastest kept
//! (`GpuOptions::tune`) and, where the graphs use programmatic dependent launch, with graphs that
//! do not.
//! Runs wherever an NVIDIA GPU is present and says that it skipped elsewhere.
//!
//! Without libtest (`harness = false`): the counting allocator sees every thread of the process,
//! and libtest's own threads allocate. Run from a staged folder (`cargo xtask gpu-check`) with
//! `DYNOFA_GOLDENS=<repo>/kernels/goldens`.

use dynofa_kernels::counting::Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("gpu: skipped: built without a CUDA feature of dynofa-hal-jetson");
}

#[cfg(feature = "cuda")]
fn main() {
    use dynofa_core::Supernet;
    use dynofa_core::hal::{Error, ErrorKind, InferenceEngine};
    use dynofa_hal_jetson::gpu::{BarrierOrder, GpuEngine, GpuOptions};
    use dynofa_kernels::counting::allocations;
    use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights, goldens};

    let cases = goldens::load().unwrap();
    let mut failures = Vec::new();
    for net in [Supernet::W1_2, Supernet::W1_0] {
        // The default options, then plans without each latency-shaped kernel, then, if the
        // graphs had programmatic dependent launch, graphs without it.
        let mut had_programmatic = false;
        let all = GpuOptions::default();
        for (options, what) in [
            (all, ""),
            (GpuOptions { pointwise_warps: false, ..all }, ", no PointwiseWarps"),
            (GpuOptions { pointwise_ksplit: false, ..all }, ", no PointwiseKSplit"),
            (GpuOptions { depthwise_region: false, ..all }, ", no DepthwiseRegion"),
            (GpuOptions { fused: false, ..all }, ", no fused kernels"),
            (GpuOptions { write_combined_input: false, mapped_logits: false, ..all }, ", cached input, logits copied"),
            (GpuOptions { mapped_input: true, ..all }, ", mapped input"),
            (GpuOptions { tune: true, ..all }, ", tuned"),
            (GpuOptions { programmatic_launch: false, ..all }, ""),
            // Last: should its barrier trap, the context is lost for whatever came after.
            (GpuOptions { persistent: true, ..all }, ", persistent kernel"),
            (
                GpuOptions { persistent: true, barrier: BarrierOrder::Fences, ..all },
                ", persistent kernel, fenced barrier",
            ),
            (GpuOptions { persistent: true, tune: true, ..all }, ", persistent kernel or not, tuned"),
        ] {
            if !options.programmatic_launch && !had_programmatic {
                continue;
            }
            let weights = SupernetWeights::seeded(net, DEFAULT_SEED);
            let mut gpu = match GpuEngine::with_options(weights.clone(), options) {
                Ok(engine) => engine,
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    println!("gpu: skipped: {e}");
                    return;
                }
                Err(e) => panic!("the CUDA engine did not start: {e}"),
            };
            let r = gpu.compile_report();
            println!("gpu: {} {} compile {:.2} s (cached: {})", r.device, r.arch, r.compile_s, r.cached);
            let mut cpu = CpuEngine::new(weights);
            // The cases with the supernet's BN statistics first: a case with its own shares its
            // sub-network with one of those (w12_mid), and registering its statistics replaces them.
            let mut mine: Vec<_> = cases.iter().filter(|g| g.net == net).collect();
            mine.sort_by_key(|g| g.bn.is_some());
            let configs: Vec<_> = mine.iter().map(|g| g.config).collect();
            // A capture the driver refuses fails this variant, not the ones after it.
            if let Err(e) = gpu.prepare(&configs) {
                println!("gpu: w{}{what}: capture failed: {e}", net.width_mult);
                failures.push(format!("w{}{what}: capture failed: {e}", net.width_mult));
                continue;
            }
            let (programmatic, refused) = gpu.programmatic_launch();
            had_programmatic |= programmatic;
            let mode = format!("{} launch{what}", if programmatic { "programmatic" } else { "plain" });
            if let Some(e) = refused {
                println!("gpu: the driver refused programmatic dependent launch: {e}");
            }
            let (mut y_gpu, mut y_cpu) = (vec![0.0; 1000], vec![0.0; 1000]);
            for g in &mine {
                if let Some(bn) = &g.bn {
                    // Recaptures the sub-network's graph with this BN set.
                    let table = cpu.weights().load_bn_statistics(bn, &g.config).unwrap();
                    gpu.register_bn(&g.config, &table).unwrap();
                    cpu.register_bn(&g.config, table).unwrap();
                }
                gpu.activate(&g.config).unwrap();
                gpu.infer(&g.input, &mut y_gpu).unwrap();
                cpu.activate(&g.config).unwrap();
                cpu.infer(&g.input, &mut y_cpu).unwrap();
                let scale = y_cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let vs_cpu = y_gpu.iter().zip(&y_cpu).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                let vs_ofa = g.error(&y_gpu);
                println!("gpu: {} ({mode}): vs CPU {vs_cpu:.2e}, vs ofa {vs_ofa:.2e}", g.name);
                if !(vs_cpu <= goldens::TOLERANCE && vs_ofa <= goldens::TOLERANCE) {
                    failures.push(format!("{} ({mode}): vs CPU {vs_cpu:.3e}, vs ofa {vs_ofa:.3e}", g.name));
                }
            }

            // Switching and inference after start-up allocate nothing on the host.
            let before = allocations();
            for i in 0..1000 {
                let g = mine[i % mine.len()];
                gpu.activate(&g.config).unwrap();
                gpu.infer(&g.input, &mut y_gpu).unwrap();
            }
            let count = allocations() - before;
            println!("gpu: w{} ({mode}): 1000 switches and inferences, {count} allocations", net.width_mult);
            if count != 0 {
                failures.push(format!("w{} ({mode}): {count} allocations in activate/infer", net.width_mult));
            }
        }
    }
    assert!(failures.is_empty(), "the CUDA engine failed:\n{}", failures.join("\n"));
    println!("gpu: ok");
}
