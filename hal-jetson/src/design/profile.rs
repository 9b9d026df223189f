//! Latency profiling on this device: whole sub-networks timed through any
//! [`InferenceEngine`] (warm-up, repetitions, mean and standard deviation), every op of them
//! through an engine that marks where each op ends (OFA per-op tables), and how well a prediction
//! (such as a per-op table sum) agrees with what was measured.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use dynofa_core::arch::{IN_CHANNELS, NUM_CLASSES};
use dynofa_core::hal::{Error, InferenceEngine};
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::CpuEngine;
use dynofa_kernels::cpu::Layer;

use super::DesignError;
use super::latency::{Latency, NetOp, Op, OpStats, OpTable, OpTables, YAML_TABLE_SUFFIX, network_ops};

/// How many runs to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileParams {
    /// Untimed runs after activation (caches, clocks and the thread team settle).
    pub warmup: usize,
    /// Timed runs.
    pub reps: usize,
}

impl Default for ProfileParams {
    fn default() -> Self {
        ProfileParams { warmup: 10, reps: 50 }
    }
}

/// A measured latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Mean and standard deviation (population) in ms.
    pub latency: Latency,
    /// Timed runs.
    pub count: usize,
}

/// The one-minute load average (Linux), to record how busy the machine was while it was timed.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Mean and population standard deviation of samples in ms.
pub fn stats(samples: &[f64]) -> Latency {
    let n = samples.len().max(1) as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    Latency { mean_ms: mean, std_ms: var.sqrt() }
}

fn engine_err<E: Error>(e: E) -> DesignError {
    DesignError::Engine { kind: e.kind(), message: format!("{e:?}") }
}

/// A frame for resolution `r` and a logits buffer. Values do not change the work; a fixed ramp
/// avoids the denormal and all-zero special cases.
fn frame(r: u16) -> (Vec<f32>, Vec<f32>) {
    let r = r as usize;
    ((0..IN_CHANNELS * r * r).map(|i| (i % 251) as f32 / 251.0 - 0.5).collect(), vec![0.0; NUM_CLASSES])
}

/// Time one sub-network on `engine`: activate, `warmup` untimed runs, `reps` timed runs of one
/// frame each. `tick` is called after every run (for progress bars).
pub fn measure<E: InferenceEngine>(
    engine: &mut E,
    cfg: &SubnetConfig,
    params: &ProfileParams,
    tick: &dyn Fn(),
) -> Result<Measured, DesignError> {
    let (input, mut logits) = frame(cfg.r);
    engine.activate(cfg).map_err(engine_err)?;
    for _ in 0..params.warmup {
        engine.infer(&input, &mut logits).map_err(engine_err)?;
        tick();
    }
    let mut samples = Vec::with_capacity(params.reps);
    for _ in 0..params.reps {
        let start = Instant::now();
        engine.infer(&input, &mut logits).map_err(engine_err)?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        tick();
    }
    Ok(Measured { latency: stats(&samples), count: samples.len() })
}

/// An engine that can say where each op of a frame ends.
pub trait MarkedEngine: InferenceEngine {
    /// Run one frame like [`InferenceEngine::infer`], calling `mark` as each op ends.
    fn infer_marked(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        mark: &(dyn Fn(Layer) + Sync),
    ) -> Result<(), Self::Error>;
}

impl MarkedEngine for CpuEngine {
    fn infer_marked(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        mark: &(dyn Fn(Layer) + Sync),
    ) -> Result<(), Self::Error> {
        CpuEngine::infer_marked(self, input, output, mark)
    }
}

/// The engine's mark for the end of op `o`.
fn layer_of(o: &NetOp) -> Layer {
    match (o.block, o.op) {
        (Some(b), _) => Layer::Block(b),
        (None, Op::Conv { .. }) => Layer::Stem,
        (None, Op::ExpandedConv { .. }) => Layer::FirstBlock,
        (None, Op::Conv1 { .. }) => Layer::FinalExpand,
        (None, Op::AvgPool2D { .. }) => Layer::Pool,
        (None, Op::Conv2 { .. }) => Layer::FeatureMix,
        (None, Op::Logits { .. }) => Layer::Classifier,
    }
}

/// Time every op a sub-network can run at each of `resolutions`, as OFA per-op tables in `dir`
/// (`{r}_lookup_table.yaml`): for each resolution the sub-networks of
/// [`OpTables::covering_configs`] run `warmup` untimed and `reps` timed frames, each op timed from
/// the end of the op before it (the first from the frame's start) inside the whole frame, so an op
/// is timed with the caches and threads as a real frame leaves them. An op that several blocks or
/// sub-networks share gathers all their samples. `tick` is called after every frame.
pub fn measure_ops<E: MarkedEngine>(
    engine: &mut E,
    net: &Supernet,
    resolutions: &[u16],
    dir: &Path,
    params: &ProfileParams,
    tick: &dyn Fn(),
) -> Result<OpTables, DesignError> {
    let mut tables = BTreeMap::new();
    for &r in resolutions {
        let (input, mut logits) = frame(r);
        let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for cfg in OpTables::covering_configs(r) {
            let ops = network_ops(net, &cfg);
            let expected: Vec<Layer> = ops.iter().map(layer_of).collect();
            let marks = Mutex::new(Vec::with_capacity(ops.len()));
            engine.activate(&cfg).map_err(engine_err)?;
            for run in 0..params.warmup + params.reps {
                marks.lock().expect("marks are never poisoned").clear();
                let start = Instant::now();
                engine
                    .infer_marked(&input, &mut logits, &|l| {
                        marks.lock().expect("marks are never poisoned").push((l, Instant::now()))
                    })
                    .map_err(engine_err)?;
                tick();
                let marks = marks.lock().expect("marks are never poisoned");
                let found: Vec<Layer> = marks.iter().map(|&(l, _)| l).collect();
                if found != expected {
                    return Err(DesignError::Engine {
                        kind: dynofa_core::hal::ErrorKind::Other,
                        message: format!("the engine marked {found:?} for a sub-network of ops {expected:?}"),
                    });
                }
                if run < params.warmup {
                    continue;
                }
                let mut last = start;
                for (o, &(_, t)) in ops.iter().zip(marks.iter()) {
                    samples.entry(o.op.to_string()).or_default().push((t - last).as_secs_f64() * 1e3);
                    last = t;
                }
            }
        }
        let ops = samples
            .into_iter()
            .map(|(key, s)| {
                let l = stats(&s);
                (key, OpStats { count: s.len() as u64, mean: l.mean_ms, std: l.std_ms })
            })
            .collect();
        tables.insert(r, OpTable { path: dir.join(format!("{r}{YAML_TABLE_SUFFIX}")), ops });
    }
    Ok(OpTables { dir: dir.to_path_buf(), tables })
}

/// How well predicted latencies match measured ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Pairs compared.
    pub n: usize,
    /// Mean of measured / predicted.
    pub mean_ratio: f64,
    /// Mean absolute error of the prediction, in percent of the measured value.
    pub mape_pct: f64,
    /// Pearson correlation of predicted and measured.
    pub pearson: f64,
    /// Least-squares fit `measured = slope * predicted + intercept`.
    pub slope: f64,
    /// Intercept of the fit in ms.
    pub intercept: f64,
    /// Mean absolute error of the fitted prediction, in percent of the measured value.
    pub fit_mape_pct: f64,
}

/// Compare predictions with measurements (pairs in order; at least two pairs).
pub fn agreement(predicted: &[f64], measured: &[f64]) -> Agreement {
    let n = predicted.len().min(measured.len());
    let (p, m) = (&predicted[..n], &measured[..n]);
    let nf = n as f64;
    let (mp, mm) = (p.iter().sum::<f64>() / nf, m.iter().sum::<f64>() / nf);
    let cov: f64 = p.iter().zip(m).map(|(a, b)| (a - mp) * (b - mm)).sum();
    let (vp, vm) = (p.iter().map(|a| (a - mp).powi(2)).sum::<f64>(), m.iter().map(|b| (b - mm).powi(2)).sum::<f64>());
    let slope = if vp > 0.0 { cov / vp } else { 0.0 };
    let intercept = mm - slope * mp;
    let mape = |f: &dyn Fn(f64) -> f64| 100.0 * p.iter().zip(m).map(|(a, b)| (f(*a) - b).abs() / b).sum::<f64>() / nf;
    Agreement {
        n,
        mean_ratio: m.iter().zip(p).map(|(b, a)| b / a).sum::<f64>() / nf,
        mape_pct: mape(&|a| a),
        pearson: if vp > 0.0 && vm > 0.0 { cov / (vp * vm).sqrt() } else { 0.0 },
        slope,
        intercept,
        fit_mape_pct: mape(&|a| slope * a + intercept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::latency::OpTables;
    use crate::design::testdata::{nets_6, nets_7, shared_path};
    use dynofa_core::Supernet;
    use dynofa_core::hal::{ErrorKind, ErrorType};

    /// An engine whose frame takes longer for deeper networks, and which can fail on demand.
    struct Sleepy {
        active: Option<SubnetConfig>,
        fail: bool,
    }

    impl ErrorType for Sleepy {
        type Error = ErrorKind;
    }

    impl InferenceEngine for Sleepy {
        fn activate(&mut self, config: &SubnetConfig) -> Result<(), ErrorKind> {
            if self.fail {
                return Err(ErrorKind::Device);
            }
            self.active = Some(*config);
            Ok(())
        }
        fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ErrorKind> {
            let cfg = self.active.ok_or(ErrorKind::NotPrepared)?;
            assert_eq!(input.len(), 3 * (cfg.r as usize).pow(2));
            assert_eq!(output.len(), 1000);
            let depth: u32 = cfg.d.iter().map(|&d| d as u32).sum();
            std::thread::sleep(std::time::Duration::from_micros(200 * depth as u64));
            Ok(())
        }
    }

    #[test]
    fn measures_with_warmup_and_reps() {
        let mut e = Sleepy { active: None, fail: false };
        let ticks = std::cell::Cell::new(0);
        let p = ProfileParams { warmup: 2, reps: 5 };
        let shallow =
            measure(&mut e, &SubnetConfig::uniform(3, 3, 2, 160), &p, &|| ticks.set(ticks.get() + 1)).unwrap();
        let deep = measure(&mut e, &SubnetConfig::uniform(3, 3, 4, 160), &p, &|| {}).unwrap();
        assert_eq!((ticks.get(), shallow.count), (7, 5));
        // 10 and 20 blocks at 0.2 ms each: sleeping never undershoots.
        assert!(shallow.latency.mean_ms >= 2.0 && deep.latency.mean_ms >= 4.0);
        assert!(deep.latency.mean_ms > shallow.latency.mean_ms);
        e.fail = true;
        let err = measure(&mut e, &SubnetConfig::uniform(3, 3, 2, 160), &p, &|| {}).unwrap_err();
        assert!(matches!(err, DesignError::Engine { kind: ErrorKind::Device, .. }), "{err}");
    }

    /// Marks every op of the active sub-network after sleeping 50 us per kernel tap of its blocks
    /// (100 us for the other ops); `skip` leaves out one mark.
    struct Marking {
        active: Option<SubnetConfig>,
        skip: Option<Layer>,
    }

    impl ErrorType for Marking {
        type Error = ErrorKind;
    }

    impl InferenceEngine for Marking {
        fn activate(&mut self, config: &SubnetConfig) -> Result<(), ErrorKind> {
            self.active = Some(*config);
            Ok(())
        }
        fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ErrorKind> {
            self.infer_marked(input, output, &|_| {})
        }
    }

    fn sleep_of(o: &NetOp) -> u64 {
        match o.op {
            Op::ExpandedConv { kernel, .. } if o.block.is_some() => 50 * kernel as u64,
            _ => 100,
        }
    }

    impl MarkedEngine for Marking {
        fn infer_marked(&mut self, _: &[f32], _: &mut [f32], mark: &(dyn Fn(Layer) + Sync)) -> Result<(), ErrorKind> {
            let cfg = self.active.ok_or(ErrorKind::NotPrepared)?;
            for o in network_ops(&Supernet::W1_2, &cfg) {
                std::thread::sleep(std::time::Duration::from_micros(sleep_of(&o)));
                if Some(layer_of(&o)) != self.skip {
                    mark(layer_of(&o));
                }
            }
            Ok(())
        }
    }

    #[test]
    fn times_every_op_into_per_op_tables() {
        let net = Supernet::W1_2;
        let mut e = Marking { active: None, skip: None };
        let p = ProfileParams { warmup: 1, reps: 2 };
        let frames = std::cell::Cell::new(0);
        let dir = Path::new("ops");
        let t = measure_ops(&mut e, &net, &[160, 176], dir, &p, &|| frames.set(frames.get() + 1)).unwrap();
        assert_eq!(frames.get(), 2 * 9 * 3);
        assert_eq!(t.resolutions(), [160, 176]);
        assert_eq!(t.tables[&176].path, dir.join("176_lookup_table.yaml"));
        // Every op of every sub-network is there, no more, each no faster than it slept.
        let model = t.compile(&net, &[160, 176]).unwrap();
        for r in [160, 176] {
            let table = &t.tables[&r];
            let mut keys = std::collections::BTreeSet::new();
            for cfg in OpTables::covering_configs(r) {
                for o in network_ops(&net, &cfg) {
                    let s = table.get(&o.op).unwrap();
                    assert!(s.mean >= sleep_of(&o) as f64 * 1e-3 && s.count >= 2, "{} {s:?}", o.op);
                    keys.insert(o.op.to_string());
                }
            }
            assert_eq!(table.ops.keys().cloned().collect::<std::collections::BTreeSet<_>>(), keys);
            // The stem runs in all nine sub-networks, twice timed each.
            assert_eq!(table.ops[&network_ops(&net, &SubnetConfig::uniform(3, 3, 2, r))[0].op.to_string()].count, 18);
        }
        let small = SubnetConfig::uniform(3, 3, 2, 160);
        let slept: u64 = network_ops(&net, &small).iter().map(sleep_of).sum();
        assert!(model.latency(&small).unwrap() >= slept as f64 * 1e-3);
        // An engine whose marks do not follow the sub-network's ops is refused.
        e.skip = Some(Layer::Pool);
        let err = measure_ops(&mut e, &net, &[160], dir, &p, &|| {}).unwrap_err();
        assert!(err.to_string().contains("the engine marked"), "{err}");
    }

    /// The CPU engine marks every op in order, and a marked frame computes what a plain one does.
    #[test]
    fn cpu_engine_marks_every_op() {
        let net = Supernet::W1_2;
        let mut e = CpuEngine::with_threads(dynofa_kernels::SupernetWeights::seeded(net, 1), 2);
        let cfg = SubnetConfig { d: [2, 3, 4, 2, 3], ..SubnetConfig::uniform(5, 4, 2, 160) };
        let (input, mut plain) = frame(160);
        let mut marked = plain.clone();
        e.activate(&cfg).unwrap();
        e.infer(&input, &mut plain).unwrap();
        let marks = Mutex::new(Vec::new());
        e.infer_marked(&input, &mut marked, &|l| marks.lock().unwrap().push(l)).unwrap();
        let expected: Vec<Layer> = network_ops(&net, &cfg).iter().map(layer_of).collect();
        assert_eq!(marks.into_inner().unwrap(), expected);
        assert_eq!(plain, marked);
    }

    #[test]
    fn statistics_and_agreement() {
        let s = stats(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean_ms, 2.5);
        assert!((s.std_ms - 1.25f64.sqrt()).abs() < 1e-12);
        // measured = 2 * predicted + 1 exactly.
        let a = agreement(&[1.0, 2.0, 4.0], &[3.0, 5.0, 9.0]);
        assert!((a.slope - 2.0).abs() < 1e-12 && (a.intercept - 1.0).abs() < 1e-12);
        assert!((a.pearson - 1.0).abs() < 1e-12 && a.fit_mape_pct < 1e-9);
        assert!((a.mean_ratio - (3.0 + 2.5 + 2.25) / 3.0).abs() < 1e-12);
    }

    /// The Xavier NX GPU tables against Dynamic-OFA's measured latencies of its stored levels:
    /// the sums rank the levels correctly but sit far below the measured totals.
    #[test]
    fn xavier_nx_gpu_sums_rank_but_underestimate_measured_latency() {
        let gpu = OpTables::load_dir(&shared_path("latency_table@jetson_GPU")).unwrap();
        let levels: Vec<_> = nets_6().into_iter().chain(nets_7()).collect();
        let pred: Vec<f64> = levels.iter().map(|l| gpu.network(&Supernet::W1_2, &l.config).unwrap().mean_ms).collect();
        let meas: Vec<f64> = levels.iter().map(|l| l.latency_ms).collect();
        let a = agreement(&pred, &meas);
        eprintln!("xavier nx gpu per-op sums vs measured (13 stored levels): {a:?}");
        assert!(a.mean_ratio > 1.9 && a.mape_pct > 45.0, "{a:?}");
        assert!(a.pearson > 0.8, "{a:?}");
    }
}
