//! Latency profiling on this device: whole sub-networks timed through any
//! [`InferenceEngine`] (warm-up, repetitions, mean and standard deviation), and how well a
//! prediction (such as a per-op table sum) agrees with what was measured.

use std::time::Instant;

use dynofa_core::SubnetConfig;
use dynofa_core::arch::{IN_CHANNELS, NUM_CLASSES};
use dynofa_core::hal::{Error as _, InferenceEngine};

use super::DesignError;
use super::latency::Latency;

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

/// Time one sub-network on `engine`: activate, `warmup` untimed runs, `reps` timed runs of one
/// frame each. `tick` is called after every run (for progress bars).
pub fn measure<E: InferenceEngine>(
    engine: &mut E,
    cfg: &SubnetConfig,
    params: &ProfileParams,
    tick: &dyn Fn(),
) -> Result<Measured, DesignError> {
    let engine_err = |e: E::Error| DesignError::Engine { kind: e.kind(), message: format!("{e:?}") };
    let r = cfg.r as usize;
    // Values do not change the work; a fixed ramp avoids the denormal and all-zero special cases.
    let input: Vec<f32> = (0..IN_CHANNELS * r * r).map(|i| (i % 251) as f32 / 251.0 - 0.5).collect();
    let mut logits = vec![0.0f32; NUM_CLASSES];
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
