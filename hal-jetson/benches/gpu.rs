//! The CUDA engine's batch-1 latency on the w1.2 sub-networks max (k7 e6 d4 r224), mid (k5 e4 d3
//! r192) and min (k3 e3 d2 r160), seeded weights, and the host cost of switching between captured
//! sub-networks. Says that it skipped where no NVIDIA GPU is present.
//!
//! Output lines (read by `scripts/gpu/check.py`): `dynofa-cuda <name> median_ms=<v>`,
//! `dynofa-cuda-kernels <name> gpu_us=<v>` (the kernels alone, as one graph, without the copies),
//! `dynofa-cuda-parts <name> stage_us=<v> run_us=<v>` (`infer`'s halves: the host's copy into the
//! page-locked input, and the graph replay with its copies and the wait),
//! `kernels <name>: ...` (GPU time per kernel kind, each launch repeated in a graph: where to
//! tune), `launch floor: ...` (what a graph node that does nothing costs),
//! `switch median_us=<v> p99_us=<v> max_us=<v>`, then the latency and `parts` lines with the
//! host side's alternatives: cached rather than write-combined page-locked input
//! (`dynofa-cuda-cachedinput ...`, `dynofa-cuda-parts-cachedinput ...`) and logits copied back by
//! the graph rather than written into mapped host memory (`-copylogits`) and the input read from
//! mapped host memory rather than copied to the GPU (`-mappedinput`); then the same latency
//! and kernel lines for plans without the warps kernels (`dynofa-cuda-nowarps ...`,
//! `dynofa-cuda-nowarps-kernels ...`, `kernels <name>-nowarps: ...`), without `PointwiseKSplit`
//! (`-noksplit`), without `DepthwiseRegion` (`-noregion`), without the fused kernels
//! (`-nofused`) and with every layer's alternatives measured at capture (`-tuned`, after
//! `tuning <name>: ...` lines; `-tuned-nomma` without `PointwiseMma` among them) and, where graphs
//! use programmatic dependent launch,
//! `dynofa-cuda-plain <name> median_ms=<v>` for graphs without it; then `grid barrier: ...`
//! (what a barrier across one block per multiprocessor costs, where the persistent kernel pays
//! it; or why it was not measured) and `persistent-trace <name>: ...` (the
//! persistent kernel launched alone: each launch's span and the barriers between them, in all and
//! per kernel kind, from its own trace), both with the default barrier order (release/acquire
//! atomics), then the same with the barrier ordered by fences (`grid barrier (fences): ...`,
//! `persistent-trace-fences <name>: ...`), and last the latency and `parts` lines of the engine
//! with the persistent kernel in its graphs (`dynofa-cuda-persistent ...`, or why it was not
//! measured), the same with fences (`-persistent-fences`), then of the engine that measured at
//! capture which of the two kinds of graph is faster for each sub-network
//! (`tuning-persistent-tuned <name>: ...`, `dynofa-cuda-persistent-tuned ...`).
//! With `--launches FILE`, every launch of the three plans in each of those plan variants (`max`,
//! `max-nowarps`, `max-noksplit`, `max-noregion`, `max-nofused`, `max-tuned`, ...) goes to FILE
//! as CSV: its kernel, grid, block, integer arguments, the plan's estimate and the measured GPU
//! time (per launch of a graph of 20 of it: what calibrates the pointwise models in
//! `dynofa_kernels::gpu`).
//! `cargo bench -p dynofa-hal-jetson --bench gpu [-- --runs N] [--launches FILE]`.

#[cfg(not(feature = "cuda"))]
fn main() {
    println!("gpu bench: skipped: built without a CUDA feature of dynofa-hal-jetson");
}

#[cfg(feature = "cuda")]
fn main() {
    use std::time::Instant;

    use dynofa_core::hal::{Error, ErrorKind, InferenceEngine};
    use dynofa_core::{SubnetConfig, Supernet};
    use dynofa_hal_jetson::gpu::{BarrierOrder, GpuEngine, GpuOptions};
    use dynofa_kernels::gpu::{Arg, Kernel, PersistentSpan};
    use dynofa_kernels::rng::golden_input;
    use dynofa_kernels::{DEFAULT_SEED, SupernetWeights};

    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args.get(i + 1).expect(flag).as_str());
    let runs: usize = value("--runs").map_or(1000, |v| v.parse().expect("--runs N"));
    let mut csv = String::from("subnet,index,kernel,grid,block,ints,model_us,gpu_us\n");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };

    let mut engine = match GpuEngine::new(SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED)) {
        Ok(engine) => engine,
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            println!("gpu bench: skipped: {e}");
            return;
        }
        Err(e) => panic!("the CUDA engine did not start: {e}"),
    };
    let r = engine.compile_report();
    println!(
        "device {:?} arch {} multiprocessors {} compile_s={:.3} cached={} mapped (input, logits)={:?}",
        r.device,
        r.arch,
        engine.target().sms,
        r.compile_s,
        r.cached,
        engine.mapped()
    );
    let named = [
        ("max", SubnetConfig::uniform(7, 6, 4, 224)),
        ("mid", SubnetConfig::uniform(5, 4, 3, 192)),
        ("min", SubnetConfig::uniform(3, 3, 2, 160)),
    ];
    let configs: Vec<_> = named.iter().map(|(_, c)| *c).collect();
    let start = Instant::now();
    engine.prepare(&configs).expect("capture");
    println!("captured {} graphs in {:.1} ms", configs.len(), start.elapsed().as_secs_f64() * 1e3);

    // Median latency of `engine.infer` (input from and logits to host memory) on `cfg`.
    let latency = |engine: &mut GpuEngine, cfg: &SubnetConfig| {
        let (x, mut y) = (golden_input(0, cfg.r as usize), vec![0.0; 1000]);
        engine.activate(cfg).expect("prepared");
        for _ in 0..runs / 10 + 10 {
            engine.infer(&x, &mut y).expect("inference");
        }
        let times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                engine.infer(&x, &mut y).expect("inference");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        median(times)
    };
    let (programmatic, refused) = engine.programmatic_launch();
    println!(
        "programmatic dependent launch: {programmatic}{}",
        refused.map_or(String::new(), |e| format!(" (refused: {e})"))
    );
    // Latency, the kernels alone and each launch of the three plans, as `dynofa-cuda{suffix}`
    // lines and CSV rows of `<name>{suffix}`.
    let profile = |engine: &mut GpuEngine, suffix: &str, csv: &mut String| {
        for (name, cfg) in &named {
            println!("dynofa-cuda{suffix} {name} median_ms={:.4}", latency(engine, cfg));
            println!(
                "dynofa-cuda{suffix}-kernels {name} gpu_us={:.1}",
                engine.kernels_micros(cfg).expect("graph timing")
            );
            let name = format!("{name}{suffix}");
            // Where the time goes: GPU time per kernel kind, each launch repeated in a graph.
            let times = engine.kernel_times(cfg, 20).expect("kernel timing");
            let total: f32 = times.iter().map(|(_, us)| us).sum();
            for (i, (l, us)) in times.iter().enumerate() {
                let ints: Vec<String> = l
                    .args
                    .iter()
                    .filter_map(|a| if let Arg::Int(v) = a { Some(v.to_string()) } else { None })
                    .collect();
                let model = l.model_us.map_or(String::new(), |us| format!("{us:.2}"));
                let [g, b] = [l.grid, l.block].map(|d| format!("{}x{}x{}", d[0], d[1], d[2]));
                *csv += &format!("{name},{i},{},{g},{b},{},{model},{us:.2}\n", l.kernel.name(), ints.join(" "));
            }
            let mut line = format!(
                "kernels {name}: {} launches, {total:.1} us GPU time (each one repeated in a graph);",
                times.len()
            );
            for k in Kernel::ALL {
                let mine: Vec<f32> = times.iter().filter(|(l, _)| l.kernel == k).map(|(_, us)| *us).collect();
                let max = mine.iter().copied().fold(0.0, f32::max);
                line += &format!(" {} {}x {:.1} us (max {max:.1})", k.name(), mine.len(), mine.iter().sum::<f32>());
            }
            println!("{line}");
        }
    };
    profile(&mut engine, "", &mut csv);
    // Where dynofa-cuda's time beyond the kernels goes: the host's copy into the page-locked
    // input (stage) against the graph replay with its copies and the wait (run_staged).
    let parts = |engine: &mut GpuEngine, suffix: &str| {
        for (name, cfg) in &named {
            let (x, mut y) = (golden_input(0, cfg.r as usize), vec![0.0; 1000]);
            engine.activate(cfg).expect("prepared");
            let (mut stage, mut run) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
            for _ in 0..runs {
                let t = Instant::now();
                engine.stage(&x).expect("staging");
                stage.push(t.elapsed().as_secs_f64() * 1e6);
                let t = Instant::now();
                engine.run_staged(&mut y).expect("inference");
                run.push(t.elapsed().as_secs_f64() * 1e6);
            }
            println!("dynofa-cuda-parts{suffix} {name} stage_us={:.1} run_us={:.1}", median(stage), median(run));
        }
    };
    parts(&mut engine, "");

    println!("launch floor: {:.2} us per graph node that does nothing", engine.launch_floor(200).expect("floor"));

    // Host cost of a switch: activate() alone, cycling through the captured sub-networks.
    let mut times = Vec::with_capacity(100 * runs);
    for i in 0..100 * runs {
        let t = Instant::now();
        engine.activate(&configs[i % configs.len()]).expect("prepared");
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!("switch median_us={:.3} p99_us={:.3} max_us={:.3}", at(0.5), at(0.99), at(1.0));
    drop(engine);

    // Each engine in turn (one at a time on the GPU), with its own options.
    let start = |options: GpuOptions| {
        let mut engine = GpuEngine::with_options(SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED), options)
            .expect("the CUDA engine started once");
        engine.prepare(&configs).expect("capture");
        engine
    };
    let all = GpuOptions::default();
    // The host side's alternatives (the same plans): the latency and infer's halves.
    for (suffix, options) in [
        ("-cachedinput", GpuOptions { write_combined_input: false, ..all }),
        ("-copylogits", GpuOptions { mapped_logits: false, ..all }),
        ("-mappedinput", GpuOptions { mapped_input: true, ..all }),
    ] {
        let mut engine = start(options);
        for (name, cfg) in &named {
            println!("dynofa-cuda{suffix} {name} median_ms={:.4}", latency(&mut engine, cfg));
        }
        parts(&mut engine, suffix);
    }
    // The plans without each of the latency-shaped kernels, and the plans with every layer's
    // alternatives measured, for comparison.
    for (suffix, options) in [
        ("-nowarps", GpuOptions { pointwise_warps: false, ..all }),
        ("-noksplit", GpuOptions { pointwise_ksplit: false, ..all }),
        ("-noregion", GpuOptions { depthwise_region: false, ..all }),
        ("-nofused", GpuOptions { fused: false, ..all }),
        ("-tuned", GpuOptions { tune: true, ..all }),
        ("-tuned-nomma", GpuOptions { tune: true, pointwise_mma: false, ..all }),
    ] {
        let mut engine = start(options);
        for (name, cfg) in &named {
            if let Some(t) = engine.tuning(cfg) {
                println!(
                    "tuning {name}: {} steps measured, {} changed, {:.1} us planned -> {:.1} us picked, {:.2} s",
                    t.measured, t.changed, t.planned_us, t.picked_us, t.seconds
                );
            }
        }
        profile(&mut engine, suffix, &mut csv);
    }
    if let Some(path) = value("--launches") {
        std::fs::write(path, csv).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        println!("launches: {path}");
    }

    // The same graphs without programmatic dependent launch, for comparison.
    if programmatic {
        let mut plain = start(GpuOptions { programmatic_launch: false, ..all });
        for (name, cfg) in &named {
            println!("dynofa-cuda-plain {name} median_ms={:.4}", latency(&mut plain, cfg));
        }
        println!(
            "launch floor (plain): {:.2} us per graph node that does nothing",
            plain.launch_floor(200).expect("floor")
        );
    }

    // What the persistent kernel pays between launches, then the persistent kernel itself, last:
    // should its barrier trap, the context is lost, and the lines above are out. Its trace first,
    // the kernel launched alone on an engine with each barrier order in turn: it shows where the
    // kernel's time goes even if the driver refuses to capture a cooperative launch in a graph.
    for (tag, label, order) in
        [("", "grid barrier", BarrierOrder::ReleaseAcquire), ("-fences", "grid barrier (fences)", BarrierOrder::Fences)]
    {
        let options = GpuOptions { barrier: order, ..all };
        let weights = SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED);
        let mut engine = GpuEngine::with_options(weights, options).expect("started before");
        match engine.grid_barrier(1000, order) {
            Ok(us) => println!("{label}: {us:.2} us per barrier across {} blocks", engine.target().sms),
            Err(e) => println!("{label}: not measured: {e}"),
        }
        for (name, cfg) in &named {
            let spans = match engine.persistent_trace(cfg, 20) {
                Ok(spans) => spans,
                Err(e) => {
                    println!("persistent-trace{tag} {name}: not traced: {e}");
                    continue;
                }
            };
            let us = |f: fn(&PersistentSpan) -> f64| spans.iter().map(|(_, s)| f(s) / 1e3).collect::<Vec<f64>>();
            let (launches, barriers) = (us(|s| s.launch_ns), us(|s| s.barrier_ns));
            let mut line = format!(
                "persistent-trace{tag} {name}: {} launches, {:.1} us from the first start to the last arrival: \
                 launches {:.1} us, barriers {:.1} us (median {:.2} us);",
                spans.len(),
                launches.iter().chain(&barriers).sum::<f64>(),
                launches.iter().sum::<f64>(),
                barriers.iter().sum::<f64>(),
                median(barriers[..barriers.len() - 1].to_vec()),
            );
            for k in Kernel::ALL {
                let mine: Vec<f64> =
                    spans.iter().zip(&launches).filter(|((l, _), _)| l.kernel == k).map(|(_, us)| *us).collect();
                if !mine.is_empty() {
                    line += &format!(" {} {}x {:.1} us", k.name(), mine.len(), mine.iter().sum::<f64>());
                }
            }
            println!("{line}");
        }
    }
    // The persistent kernel in every graph (with each barrier order), then with each sub-network's
    // graph the faster of the two kinds, measured at capture with the layers' alternatives (tune).
    for (suffix, options) in [
        ("-persistent", GpuOptions { persistent: true, ..all }),
        ("-persistent-fences", GpuOptions { persistent: true, barrier: BarrierOrder::Fences, ..all }),
        ("-persistent-tuned", GpuOptions { persistent: true, tune: true, ..all }),
    ] {
        let weights = SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED);
        match GpuEngine::with_options(weights, options).and_then(|mut e| e.prepare(&configs).map(|()| e)) {
            Ok(mut engine) => {
                for (name, cfg) in &named {
                    if let Some((nodes, one)) = engine.tuning(cfg).and_then(|t| t.persistent) {
                        let which = if one < nodes { "the persistent kernel" } else { "a node per launch" };
                        println!(
                            "tuning{suffix} {name}: graph {nodes:.1} us with a node per launch, {one:.1} us with \
                             the persistent kernel: {which}"
                        );
                    }
                    println!("dynofa-cuda{suffix} {name} median_ms={:.4}", latency(&mut engine, cfg));
                }
                parts(&mut engine, suffix);
            }
            Err(e) => println!("dynofa-cuda{suffix}: not measured: {e}"),
        }
    }
}
