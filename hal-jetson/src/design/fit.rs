//! Latency models fitted on measured whole sub-networks, so that a LUT of measurements (such as
//! `dynofa profile` writes) can constrain the search like per-op tables do.
//!
//! A LUT only knows the latency of its own entries. The search needs the latency of any
//! sub-network, so a linear model of each op's cost is fitted on the LUT by least squares:
//!
//! ```text
//! op latency = a * dense MACs + b * depthwise MACs + c * activation elements + d * [op is a block]
//!              + e * [op is the stem]        (one op per network: the fixed per-frame overhead)
//! ```
//!
//! with a, ..., e >= 0 (a faster op for more work would let the search exploit the fit), minimising
//! the relative error of the whole-network sums. The model is then written out as OFA per-op
//! tables, so the search and the LUT writer treat it like measured tables. Its error on
//! sub-networks it was not fitted on is measured by leave-one-out over the LUT's entries.

use std::path::{Path, PathBuf};

use dynofa_core::lut::OperatingPoint;
use dynofa_core::{SubnetConfig, Supernet};

use super::DesignError;
use super::latency::{Latency, LatencyModel, Op, OpStats, OpTable, OpTables, TABLE_SUFFIX, network_ops};
use super::lutgen::read_lut;

/// Terms of the fitted model.
pub const FEATURES: usize = 5;

/// What each term counts, with the unit of its coefficient.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "ms per M dense MACs",
    "ms per M depthwise MACs",
    "ms per M activation elements",
    "ms per block",
    "ms per network",
];

/// Fewest measured sub-networks a fit accepts: leave-one-out needs more rows than terms.
pub const MIN_MEASUREMENTS: usize = FEATURES + 3;

/// The terms of one op (work in millions, so that the normal equations stay well scaled).
pub fn op_features(op: &Op) -> [f64; FEATURES] {
    let m = 1e-6;
    let sq = |s: usize| (s * s) as f64;
    match *op {
        Op::Conv { size, out_size, out_ch } => {
            let out = out_ch as f64 * sq(out_size);
            [27.0 * out * m, 0.0, (3.0 * sq(size) + out) * m, 0.0, 1.0]
        }
        Op::ExpandedConv { in_size, in_ch, out_size, out_ch, mid, kernel, se, .. } => {
            let (cin, mid_f, cout) = (in_ch as f64, mid as f64, out_ch as f64);
            let (hw_in, hw_out) = (sq(in_size), sq(out_size));
            // `blocks.0` has no expand conv: its middle width is its input width.
            let expand = if mid != in_ch { cin * mid_f * hw_in } else { 0.0 };
            let se = if se { 2.0 * mid_f * Supernet::se_mid(mid) as f64 } else { 0.0 };
            let dense = expand + se + mid_f * cout * hw_out;
            let depthwise = sq(kernel) * mid_f * hw_out;
            let elements =
                cin * hw_in + if mid != in_ch { mid_f * hw_in } else { 0.0 } + mid_f * hw_out + cout * hw_out;
            [dense * m, depthwise * m, elements * m, 1.0, 0.0]
        }
        Op::Conv1 { size, in_ch, out_ch } => {
            let hw = sq(size);
            [(in_ch * out_ch) as f64 * hw * m, 0.0, (in_ch + out_ch) as f64 * hw * m, 0.0, 0.0]
        }
        Op::AvgPool2D { size, ch } => [0.0, 0.0, ch as f64 * (sq(size) + 1.0) * m, 0.0, 0.0],
        Op::Conv2 { in_ch, out_ch } | Op::Logits { in_ch, classes: out_ch } => {
            [(in_ch * out_ch) as f64 * m, 0.0, (in_ch + out_ch) as f64 * m, 0.0, 0.0]
        }
    }
}

/// The terms of a whole sub-network: the sum over its ops.
pub fn network_features(net: &Supernet, cfg: &SubnetConfig) -> [f64; FEATURES] {
    let mut sum = [0.0; FEATURES];
    for o in network_ops(net, cfg) {
        for (s, f) in sum.iter_mut().zip(op_features(&o.op)) {
            *s += f;
        }
    }
    sum
}

fn dot(a: &[f64; FEATURES], b: &[f64; FEATURES]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solve `a x = b` (n x n, row-major) by Gaussian elimination with partial pivoting; `None` when
/// the system is (numerically) singular.
fn solve(a: &mut [f64], b: &mut [f64], n: usize) -> Option<()> {
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
        if a[pivot * n + col].abs() <= 1e-12 * scale {
            return None;
        }
        for k in 0..n {
            a.swap(col * n + k, pivot * n + k);
        }
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row * n + col] / a[col * n + col];
            for k in col..n {
                a[row * n + k] -= f * a[col * n + k];
            }
            b[row] -= f * b[col];
        }
    }
    for col in (0..n).rev() {
        let tail: f64 = (col + 1..n).map(|k| a[col * n + k] * b[k]).sum();
        b[col] = (b[col] - tail) / a[col * n + col];
    }
    Some(())
}

/// Non-negative least squares of relative error: the `c >= 0` minimising
/// `sum_i ((x_i . c - y_i) / y_i)^2`. With five terms every support set is tried: the optimum is
/// the unconstrained fit on the support set that is feasible and leaves the least residual.
fn fit_coefficients(x: &[[f64; FEATURES]], y: &[f64]) -> [f64; FEATURES] {
    let rows: Vec<[f64; FEATURES]> = x.iter().zip(y).map(|(r, &v)| r.map(|f| f / v)).collect();
    let residual = |c: &[f64; FEATURES]| rows.iter().map(|r| (dot(r, c) - 1.0).powi(2)).sum::<f64>();
    let mut best = ([0.0; FEATURES], residual(&[0.0; FEATURES]));
    for mask in 1u32..1 << FEATURES {
        let support: Vec<usize> = (0..FEATURES).filter(|&j| mask & (1 << j) != 0).collect();
        let n = support.len();
        let mut a = vec![0.0; n * n];
        let mut b = vec![0.0; n];
        for r in &rows {
            for (i, &p) in support.iter().enumerate() {
                b[i] += r[p];
                for (j, &q) in support.iter().enumerate() {
                    a[i * n + j] += r[p] * r[q];
                }
            }
        }
        if solve(&mut a, &mut b, n).is_none() || b.iter().any(|&v| v < 0.0) {
            continue;
        }
        let mut c = [0.0; FEATURES];
        for (&j, &v) in support.iter().zip(&b) {
            c[j] = v;
        }
        let r = residual(&c);
        if r < best.1 {
            best = (c, r);
        }
    }
    best.0
}

/// `v` without its `i`-th item.
fn without<T: Copy>(v: &[T], i: usize) -> Vec<T> {
    v.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &t)| t).collect()
}

/// How well a fitted model predicts the measurements, in percent of the measured latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitReport {
    /// Measured sub-networks.
    pub n: usize,
    /// Mean absolute error on the sub-networks it was fitted on.
    pub fit_mape_pct: f64,
    /// Mean absolute error on each sub-network when fitted on all the others (leave-one-out).
    pub held_out_mape_pct: f64,
    /// Largest leave-one-out error.
    pub held_out_max_pct: f64,
}

/// A latency model fitted on measured whole sub-networks.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedModel {
    /// Where the measurements came from (for messages and the generated tables' paths).
    pub path: PathBuf,
    /// The coefficients, in the units of [`FEATURE_NAMES`].
    pub coefficients: [f64; FEATURES],
    /// Median over the measurements of std / mean: a sub-network's std is this times its mean.
    pub spread: f64,
    /// The resolutions measured, ascending.
    pub measured_resolutions: Vec<u16>,
    /// Its errors.
    pub report: FitReport,
}

impl FittedModel {
    /// Fit on measured sub-networks (at least [`MIN_MEASUREMENTS`]); `path` names their source.
    pub fn fit(net: &Supernet, measured: &[(SubnetConfig, Latency)], path: &Path) -> Result<Self, DesignError> {
        let x: Vec<[f64; FEATURES]> = measured.iter().map(|(c, _)| network_features(net, c)).collect();
        let y: Vec<f64> = measured.iter().map(|(_, l)| l.mean_ms).collect();
        let pct = |pred: f64, meas: f64| 100.0 * (pred - meas).abs() / meas;
        let coefficients = fit_coefficients(&x, &y);
        let fit_mape_pct = x.iter().zip(&y).map(|(f, &m)| pct(dot(f, &coefficients), m)).sum::<f64>() / y.len() as f64;
        let held_out: Vec<f64> = (0..y.len())
            .map(|i| {
                let c = fit_coefficients(&without(&x, i), &without(&y, i));
                pct(dot(&x[i], &c), y[i])
            })
            .collect();
        let mut ratios: Vec<f64> = measured.iter().map(|(_, l)| l.std_ms / l.mean_ms).collect();
        ratios.sort_by(f64::total_cmp);
        let mut measured_resolutions: Vec<u16> = measured.iter().map(|(c, _)| c.r).collect();
        measured_resolutions.sort_unstable();
        measured_resolutions.dedup();
        Ok(FittedModel {
            path: path.to_path_buf(),
            coefficients,
            spread: ratios.get(ratios.len() / 2).copied().unwrap_or(0.0),
            measured_resolutions,
            report: FitReport {
                n: y.len(),
                fit_mape_pct,
                held_out_mape_pct: held_out.iter().sum::<f64>() / y.len() as f64,
                held_out_max_pct: held_out.iter().copied().fold(0.0, f64::max),
            },
        })
    }

    /// Fit on the entries of a LUT file that were measured at `point`.
    pub fn from_lut(path: &Path, point: OperatingPoint) -> Result<Self, DesignError> {
        let lut = read_lut(path)?;
        let measured: Vec<(SubnetConfig, Latency)> = lut
            .entries()
            .iter()
            .filter_map(|e| {
                let l = e.latency_at(point).filter(|l| l.mean_ms > 0.0)?;
                Some((e.config, Latency { mean_ms: l.mean_ms.into(), std_ms: l.std_ms.into() }))
            })
            .collect();
        if measured.len() < MIN_MEASUREMENTS {
            let mut points: Vec<String> = lut
                .entries()
                .iter()
                .flat_map(|e| e.latency.iter().map(|l| format!("{}@{}", l.unit, l.freq_khz)))
                .collect();
            points.sort();
            points.dedup();
            return Err(DesignError::TooFewMeasurements {
                path: path.to_path_buf(),
                point: format!("{}@{}", point.unit, point.freq_khz),
                found: measured.len(),
                needed: MIN_MEASUREMENTS,
                available: points.join(", "),
            });
        }
        Self::fit(&lut.supernet(), &measured, path)
    }

    /// A sub-network's mean latency in ms.
    pub fn mean_ms(&self, net: &Supernet, cfg: &SubnetConfig) -> f64 {
        dot(&network_features(net, cfg), &self.coefficients)
    }

    /// The model as OFA per-op tables for `resolutions` (every op any sub-network runs there):
    /// each op's fitted latency as its mean, with count and std 0 (fitted, not measured).
    pub fn tables(&self, net: &Supernet, resolutions: &[u16]) -> OpTables {
        let dir = self.path.with_extension("fitted");
        let tables = resolutions
            .iter()
            .map(|&r| {
                let mut table = OpTable { path: dir.join(format!("{r}{TABLE_SUFFIX}")), ops: Default::default() };
                for cfg in OpTables::covering_configs(r) {
                    for o in network_ops(net, &cfg) {
                        let mean = dot(&op_features(&o.op), &self.coefficients);
                        table.ops.insert(o.op.to_string(), OpStats { count: 0, mean, std: 0.0 });
                    }
                }
                (r, table)
            })
            .collect();
        OpTables { dir, tables }
    }
}

/// Where a processing unit's latencies come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LatencySource {
    /// Per-op tables (OFA format).
    Tables(OpTables),
    /// A model fitted on a LUT of measured sub-networks.
    Fitted(FittedModel),
}

impl LatencySource {
    /// Per-op tables from a folder, or a model fitted on the entries of a LUT file measured at `point`.
    pub fn load(path: &Path, point: OperatingPoint) -> Result<Self, DesignError> {
        if path.is_dir() {
            Ok(LatencySource::Tables(OpTables::load_dir(path)?))
        } else {
            Ok(LatencySource::Fitted(FittedModel::from_lut(path, point)?))
        }
    }

    /// The folder of the tables or the LUT file.
    pub fn path(&self) -> &Path {
        match self {
            LatencySource::Tables(t) => &t.dir,
            LatencySource::Fitted(f) => &f.path,
        }
    }

    /// The resolutions it knows from measurement: those with a table, or those the LUT measured.
    pub fn resolutions(&self) -> Vec<u16> {
        match self {
            LatencySource::Tables(t) => t.resolutions(),
            LatencySource::Fitted(f) => f.measured_resolutions.clone(),
        }
    }

    /// A sub-network's latency: the table sum, or the fitted mean with the LUT's relative spread.
    pub fn network(&self, net: &Supernet, cfg: &SubnetConfig) -> Result<Latency, DesignError> {
        match self {
            LatencySource::Tables(t) => t.network(net, cfg),
            LatencySource::Fitted(f) => {
                let mean_ms = f.mean_ms(net, cfg);
                Ok(Latency { mean_ms, std_ms: f.spread * mean_ms })
            }
        }
    }

    /// The compiled form the search runs on.
    pub fn compile(&self, net: &Supernet, resolutions: &[u16]) -> Result<LatencyModel, DesignError> {
        match self {
            LatencySource::Tables(t) => t.compile(net, resolutions),
            LatencySource::Fitted(f) => f.tables(net, resolutions).compile(net, resolutions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::lutgen::{DesignLut, lut_of, to_json};
    use crate::design::profile::agreement;
    use crate::design::search::{SearchParams, random_configs};
    use crate::design::testdata::{nets_6, nets_7, shared_path};
    use crate::design::workspace_path;
    use dynofa_core::lut::{LatencyPoint, Top1Source, Unit};

    const NET: Supernet = Supernet::W1_2;
    const CPU0: OperatingPoint = OperatingPoint { unit: Unit::Cpu, freq_khz: 0 };

    fn random(n: usize, stream: u64) -> Vec<SubnetConfig> {
        random_configs(&SearchParams::default(), stream, n)
    }

    fn mape(model: &FittedModel, truth: &[(SubnetConfig, Latency)]) -> f64 {
        let e: f64 = truth.iter().map(|(c, l)| (model.mean_ms(&NET, c) - l.mean_ms).abs() / l.mean_ms).sum();
        100.0 * e / truth.len() as f64
    }

    #[test]
    fn recovers_the_coefficients_of_exact_data() {
        for truth in [[0.004, 0.03, 0.2, 0.15, 1.5], [0.01, 0.0, 0.5, 0.0, 3.0]] {
            let measured: Vec<_> = random(30, 3)
                .into_iter()
                .map(|c| (c, Latency { mean_ms: dot(&network_features(&NET, &c), &truth), std_ms: 0.0 }))
                .collect();
            let f = FittedModel::fit(&NET, &measured, Path::new("exact")).unwrap();
            for (got, want) in f.coefficients.iter().zip(truth) {
                assert!((got - want).abs() <= 1e-6 * want.max(1e-3), "{:?} vs {truth:?}", f.coefficients);
            }
            assert!(f.report.fit_mape_pct < 1e-6 && f.report.held_out_max_pct < 1e-6, "{:?}", f.report);
        }
    }

    /// On noisy data the fit is the non-negative least-squares optimum: the weighted residual's
    /// gradient vanishes along every positive coefficient and does not point into negative ones.
    #[test]
    fn noisy_fits_meet_the_non_negative_optimality_conditions() {
        let configs = random(25, 4);
        let x: Vec<[f64; FEATURES]> = configs.iter().map(|c| network_features(&NET, c)).collect();
        for seed in 0..20u64 {
            // Deterministic noise of up to +-30 %, and a per-network cost that falls with depth so
            // that the unconstrained optimum has a negative term.
            let y: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let noise = ((i as u64 * 2_654_435_761 + seed * 40_503) % 1000) as f64 / 1000.0 - 0.5;
                    (0.01 * f[0] + 0.3 * f[2] + 40.0 - 1.2 * f[3]) * (1.0 + 0.6 * noise)
                })
                .collect();
            let c = fit_coefficients(&x, &y);
            assert!(c.iter().all(|&v| v >= 0.0), "{c:?}");
            for j in 0..FEATURES {
                let grad: f64 = x.iter().zip(&y).map(|(f, &v)| 2.0 * (dot(f, &c) / v - 1.0) * f[j] / v).sum();
                let scale: f64 = x.iter().zip(&y).map(|(f, &v)| (f[j] / v).abs()).sum::<f64>().max(1e-12);
                if c[j] > 0.0 {
                    assert!(grad.abs() <= 1e-7 * scale, "seed {seed} term {j}: gradient {grad} at {c:?}");
                } else {
                    assert!(grad >= -1e-7 * scale, "seed {seed} term {j}: gradient {grad} at {c:?}");
                }
            }
        }
    }

    /// Dynamic-OFA's 13 stored levels with the latencies its authors measured on the Xavier NX GPU:
    /// fitted on 12 of them, the model predicts the 13th within 10 % on average, where the per-op
    /// table sums are off by about half.
    #[test]
    fn predicts_held_out_measured_xavier_nx_latency() {
        let levels: Vec<_> = nets_6().into_iter().chain(nets_7()).collect();
        let measured: Vec<_> =
            levels.iter().map(|l| (l.config, Latency { mean_ms: l.latency_ms, std_ms: 0.0 })).collect();
        let f = FittedModel::fit(&NET, &measured, Path::new("levels")).unwrap();
        let sums = agreement(
            &levels.iter().map(|l| l.lut_gpu_ms).collect::<Vec<_>>(),
            &levels.iter().map(|l| l.latency_ms).collect::<Vec<_>>(),
        );
        eprintln!("fitted on 13 measured Xavier NX GPU levels: {:?}, {:?}", f.report, f.coefficients);
        assert_eq!(f.report.n, 13);
        assert!(
            f.report.held_out_mape_pct < 10.0 && f.report.held_out_mape_pct < sums.mape_pct / 4.0,
            "{:?}",
            f.report
        );
    }

    /// The Xavier NX CPU tables as ground truth: fitted on the table sums of 40 random
    /// sub-networks, the model gives 500 others within 7 % on average.
    #[test]
    fn forty_networks_fit_the_xavier_nx_cpu_tables() {
        let tables = OpTables::load_dir(&shared_path("latency_table@jetson")).unwrap();
        let truth: Vec<_> = random(540, 5).into_iter().map(|c| (c, tables.network(&NET, &c).unwrap())).collect();
        let f = FittedModel::fit(&NET, &truth[..40], Path::new("cpu")).unwrap();
        let test = mape(&f, &truth[40..]);
        eprintln!("fitted on 40 Xavier NX CPU table sums: {:?}; on 500 others {test:.2} %", f.report);
        assert!(test < 7.0, "{test}");
        // Leave-one-out on the 40 estimates the error on new sub-networks.
        assert!((f.report.held_out_mape_pct - test).abs() < 2.0, "{:?} vs {test}", f.report);
    }

    fn write_lut(dir: &Path, measured: &[(SubnetConfig, f64)]) -> PathBuf {
        let entries = measured.iter().map(|&(c, _)| (c, 80.0, Top1Source::Predicted));
        let lut: DesignLut = lut_of(&NET, entries, "test", |c| {
            let ms = measured.iter().find(|(m, _)| m == c).unwrap().1;
            Ok(vec![LatencyPoint { unit: Unit::Cpu, freq_khz: 0, mean_ms: ms as f32, std_ms: 0.1 * ms as f32 }])
        })
        .unwrap();
        let path = dir.join("measured.json");
        std::fs::write(&path, to_json(&lut)).unwrap();
        path
    }

    #[test]
    fn a_lut_becomes_per_op_tables_the_search_can_compile() {
        let dir = tempfile::tempdir().unwrap();
        let truth = [0.004, 0.03, 0.2, 0.15, 1.5];
        let measured: Vec<_> =
            random(12, 6).into_iter().map(|c| (c, 1.05 * dot(&network_features(&NET, &c), &truth))).collect();
        let path = write_lut(dir.path(), &measured);
        let source = LatencySource::load(&path, CPU0).unwrap();
        let LatencySource::Fitted(f) = &source else { panic!("a file is a LUT") };
        assert!((f.spread - 0.1).abs() < 1e-6);
        let mut rs: Vec<u16> = measured.iter().map(|(c, _)| c.r).collect();
        rs.sort_unstable();
        rs.dedup();
        assert_eq!(source.resolutions(), rs);
        let model = source.compile(&NET, &SearchParams::default().resolutions).unwrap();
        let tables = f.tables(&NET, &[160]);
        for c in random(50, 7) {
            let want = f.mean_ms(&NET, &c);
            assert!((model.latency(&c).unwrap() - want).abs() < 1e-9 * want);
            let l = source.network(&NET, &c).unwrap();
            assert!(l.mean_ms == want && (l.std_ms - 0.1 * want).abs() < 1e-6 * want);
            if c.r == 160 {
                assert!((tables.network(&NET, &c).unwrap().mean_ms - want).abs() < 1e-9 * want);
            }
        }
        assert!(tables.tables[&160].ops.values().all(|s| s.count == 0 && s.std == 0.0 && s.mean >= 0.0));
        // A folder is read as per-op tables.
        let gpu = shared_path("latency_table@jetson_GPU");
        assert!(matches!(LatencySource::load(&gpu, CPU0).unwrap(), LatencySource::Tables(_)));
    }

    #[test]
    fn too_few_measurements_name_the_lut_and_its_points() {
        let dir = tempfile::tempdir().unwrap();
        let measured: Vec<_> = random(MIN_MEASUREMENTS - 1, 8).into_iter().map(|c| (c, 10.0)).collect();
        let path = write_lut(dir.path(), &measured);
        let err = FittedModel::from_lut(&path, CPU0).unwrap_err();
        assert!(matches!(err, DesignError::TooFewMeasurements { found: 7, needed: 8, .. }), "{err}");
        let other = OperatingPoint { unit: Unit::Gpu, freq_khz: 0 };
        let err = FittedModel::from_lut(&path, other).unwrap_err().to_string();
        assert!(
            err.starts_with(&path.display().to_string()) && err.contains("0 sub-networks measured at gpu@0"),
            "{err}"
        );
        assert!(err.contains("(cpu@0)"), "{err}");
    }

    /// The committed host LUT fits (its error is reported in BENCHMARKS.md).
    #[test]
    fn host_lut_fits() {
        let f = FittedModel::from_lut(&workspace_path("luts/host-cpu.json"), CPU0).unwrap();
        eprintln!("luts/host-cpu.json: {:?}, {:?}, spread {:.3}", f.report, f.coefficients, f.spread);
        assert!(f.report.n >= MIN_MEASUREMENTS && f.coefficients.iter().any(|&c| c > 0.0));
    }
}
