//! Figures derived from the Dynamic-OFA reference data (github.com/UoS-EEC/DynamicOFA @349461f, no
//! licence; research reference) in `../shared/data/dynamic-ofa/`: the LUT of its stored levels,
//! the GPU latency calibration and the frame-noise model. Nothing is copied; `dynofa-sim derive`
//! writes the LUT and checks the constants in [`crate::model`], `--check` fails when either is stale.

use std::path::{Path, PathBuf};

use dynofa_core::config::SubnetConfig;
use dynofa_core::lut::{LatencyPoint, LutEntry, Top1Source, Unit};
use serde::Deserialize;

use crate::model::{GPU_FIXED_MS, GPU_SCALE, JETSON_NOISE, NoiseModel};
use crate::{SimError, SimLut};

/// Where the reference data lives beside the workspace.
pub fn default_data_dir() -> PathBuf {
    crate::workspace_root().join("../shared/data/dynamic-ofa")
}

/// The `source` note of the derived LUT.
pub const LUT_SOURCE: &str = "dynofa-sim derive, from github.com/UoS-EEC/DynamicOFA @349461f (2022-11-09; no licence; research reference): stored nets_6/nets_7 levels, top-1 as stored, latency = Xavier NX per-op table sums";

#[derive(Deserialize)]
struct Extract {
    sets: std::collections::BTreeMap<String, Vec<Level>>,
}

#[derive(Deserialize)]
struct Level {
    ks: Vec<u8>,
    e: Vec<u8>,
    d: Vec<u8>,
    r: u16,
    top1_pct: f32,
    latency_ms: f64,
    lut_gpu_ms: f64,
    lut_cpu_ms: f64,
}

fn data_err(path: &Path, reason: impl ToString) -> SimError {
    SimError::Data { path: path.into(), reason: reason.to_string() }
}

fn read(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|source| SimError::Read { path: path.into(), source })
}

fn levels(dir: &Path) -> Result<(PathBuf, Vec<Level>), SimError> {
    let path = dir.join("subnets_extracted.json");
    let x: Extract = serde_json::from_str(&read(&path)?).map_err(|e| data_err(&path, e))?;
    Ok((path, x.sets.into_values().flatten().collect()))
}

/// The LUT of Dynamic-OFA's stored levels: one entry per distinct sub-network (the first set's
/// top-1 where a level is stored twice), the GPU and CPU per-op table sums as unpinned latencies.
pub fn dynamic_ofa_lut(dir: &Path) -> Result<SimLut, SimError> {
    let (path, levels) = levels(dir)?;
    let mut lut = SimLut::new(1.2);
    lut.source.push_str(LUT_SOURCE).map_err(|_| data_err(&path, "source note too long"))?;
    for l in levels {
        let wrong = |_| data_err(&path, "a level's ks/e/d list has the wrong length");
        let config = SubnetConfig {
            ks: l.ks.as_slice().try_into().map_err(wrong)?,
            e: l.e.as_slice().try_into().map_err(wrong)?,
            d: l.d.as_slice().try_into().map_err(wrong)?,
            r: l.r,
        };
        if lut.find(&config).is_some() {
            continue;
        }
        let mut e = LutEntry::new(config, l.top1_pct, Top1Source::Measured);
        for (unit, ms) in [(Unit::Gpu, l.lut_gpu_ms), (Unit::Cpu, l.lut_cpu_ms)] {
            let _ = e.set_latency(LatencyPoint { unit, freq_khz: 0, mean_ms: ms as f32, std_ms: 0.0 });
        }
        lut.push(e).map_err(|_| data_err(&path, "a level is not a w1.2 sub-network or the lut is full"))?;
    }
    Ok(lut)
}

/// The LUT as the committed file holds it: pretty JSON with a trailing newline.
pub fn lut_text(lut: &SimLut) -> String {
    let mut buf = vec![0u8; 1 << 20];
    // The buffer is far larger than 64 entries need.
    let n = lut.to_json(&mut buf).expect("a 64-entry lut fits 1 MiB");
    let v: serde_json::Value = serde_json::from_slice(&buf[..n]).expect("the core writes valid json");
    serde_json::to_string_pretty(&v).expect("a json value prints") + "\n"
}

/// Least-squares fit of measured GPU latency against the GPU per-op table sum: (fixed ms, scale, RMS error ms).
pub fn fit_calibration(dir: &Path) -> Result<(f64, f64, f64), SimError> {
    let (_, levels) = levels(dir)?;
    let n = levels.len() as f64;
    let (sx, sy) = levels.iter().fold((0.0, 0.0), |(a, b), l| (a + l.lut_gpu_ms, b + l.latency_ms));
    let (mx, my) = (sx / n, sy / n);
    let sxy: f64 = levels.iter().map(|l| (l.lut_gpu_ms - mx) * (l.latency_ms - my)).sum();
    let sxx: f64 = levels.iter().map(|l| (l.lut_gpu_ms - mx).powi(2)).sum();
    let scale = sxy / sxx;
    let fixed = my - scale * mx;
    let rms = (levels.iter().map(|l| (fixed + scale * l.lut_gpu_ms - l.latency_ms).powi(2)).sum::<f64>() / n).sqrt();
    Ok((fixed, scale, rms))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Frame latencies of the authors' traces, each over the median of its 21-frame neighbourhood;
/// the first two frames after each switch (process start-up) are dropped.
pub fn trace_ratios(dir: &Path) -> Result<Vec<f64>, SimError> {
    let mut out = Vec::new();
    for name in ["latencylog_80.txt", "latencylog_ofa_classification.txt"] {
        let path = dir.join("logs").join(name);
        let text = read(&path)?;
        for chunk in text.split("Change to level").skip(1) {
            let values = chunk.split_once('\n').map_or("", |(_, rest)| rest);
            let mut lat = Vec::new();
            for v in values.split([',', '\n']).map(str::trim).filter(|v| !v.is_empty()) {
                lat.push(v.parse::<f64>().map_err(|e| data_err(&path, format!("{v:?}: {e}")))?);
            }
            let lat = lat.get(2..).unwrap_or(&[]);
            if lat.len() < 9 {
                continue;
            }
            for j in 0..lat.len() {
                let mut w = lat[j.saturating_sub(10)..(j + 11).min(lat.len())].to_vec();
                out.push(lat[j] / median(&mut w));
            }
        }
    }
    Ok(out)
}

/// The noise model fitted on the traces, and the traces' 99th percentile.
pub fn fit_noise(dir: &Path) -> Result<(NoiseModel, f64), SimError> {
    let mut r = trace_ratios(dir)?;
    if r.is_empty() {
        return Err(data_err(&dir.join("logs"), "no frame latencies found"));
    }
    let m = median(&mut r);
    let mut dev: Vec<f64> = r.iter().map(|x| (x - m).abs()).collect();
    let sigma = 1.4826 * median(&mut dev);
    let spike_min = 0.15;
    let mut spikes: Vec<f64> = r.iter().copied().filter(|&x| x >= 1.0 + spike_min).collect();
    let p_spike = spikes.len() as f64 / r.len() as f64;
    // The Pareto law from `spike_min` whose median excess is the spikes' median excess.
    let alpha = core::f64::consts::LN_2 / ((median(&mut spikes) - 1.0) / spike_min).ln();
    let q99 = r[((r.len() as f64 * 0.99) as usize).min(r.len() - 1)];
    Ok((NoiseModel { sigma, p_spike, spike_min, alpha }, q99))
}

/// Refit everything and compare with the constants in [`crate::model`] (to their stated
/// precision); returns a report, or what is stale.
pub fn check_constants(dir: &Path) -> Result<String, SimError> {
    let (fixed, scale, rms) = fit_calibration(dir)?;
    let (noise, q99) = fit_noise(dir)?;
    let report = format!(
        "gpu calibration: measured = {fixed:.3} ms + {scale:.4} x table sum (rms {rms:.2} ms)\n\
         noise: sigma {:.4}, spikes {:.4} of frames from +{:.2}, pareto alpha {:.2}; traces' p99 {q99:.3}, model's {:.3}\n",
        noise.sigma,
        noise.p_spike,
        noise.spike_min,
        noise.alpha,
        JETSON_NOISE.quantile(0.99),
    );
    let stale = (fixed - GPU_FIXED_MS).abs() > 5e-4
        || (scale - GPU_SCALE).abs() > 5e-4
        || (noise.sigma - JETSON_NOISE.sigma).abs() > 5e-4
        || (noise.p_spike - JETSON_NOISE.p_spike).abs() > 5e-4
        || (noise.alpha - JETSON_NOISE.alpha).abs() > 0.05;
    if stale {
        return Err(data_err(dir, format!("constants in hal-sim/src/model.rs are stale; the data gives:\n{report}")));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Option<PathBuf> {
        let dir = default_data_dir();
        if dir.join("subnets_extracted.json").exists() {
            Some(dir)
        } else {
            eprintln!("skipped: no reference data at {}", dir.display());
            None
        }
    }

    #[test]
    fn constants_and_committed_lut_match_the_reference_data() {
        let Some(dir) = data() else { return };
        check_constants(&dir).unwrap();
        let committed = std::fs::read_to_string(crate::dynamic_ofa_lut_path()).unwrap();
        let lut = dynamic_ofa_lut(&dir).unwrap();
        assert_eq!(lut.len(), 10);
        assert_eq!(committed, lut_text(&lut), "luts/dynamic-ofa-nx.json is stale: run `dynofa-sim derive`");
    }
}
