//! The simulated Jetson Xavier NX: latency calibration, DVFS, frame noise and power.
//!
//! Figures marked "derived" were fitted on data from github.com/UoS-EEC/DynamicOFA @349461f (no
//! licence; research reference), read from `../shared/data/dynamic-ofa/`; [`crate::derive`]
//! refits them and `dynofa-sim derive --check` fails when these constants are stale.

use dynofa_core::control::{PowerPoint, PowerTable};
use dynofa_core::lut::Unit;

/// The Xavier NX GPU's operating points in kHz (its devfreq `available_frequencies`).
pub const GPU_KHZ: [u32; 11] =
    [114_750, 204_000, 306_000, 408_000, 510_000, 599_250, 701_250, 803_250, 905_250, 1_007_250, 1_109_250];
/// The CPU cluster's clock in kHz; the simulator does not scale CPU clocks.
pub const CPU_KHZ: [u32; 1] = [1_907_200];

/// The operating points of a unit, ascending.
pub fn operating_points(unit: Unit) -> &'static [u32] {
    match unit {
        Unit::Gpu => &GPU_KHZ,
        Unit::Cpu => &CPU_KHZ,
    }
}

/// Derived: measured GPU frame latency = `GPU_FIXED_MS + GPU_SCALE * (sum of the Xavier NX GPU
/// per-op table)`, a least-squares fit over the 13 stored Dynamic-OFA levels (`latency_ms`
/// against `lut_gpu_ms` in `subnets_extracted.json`; RMS error 3.2 ms). The per-op sums miss
/// per-frame overhead (host-side launches, PyTorch) and inter-op gaps.
pub const GPU_FIXED_MS: f64 = 11.875;
/// Derived: see [`GPU_FIXED_MS`].
pub const GPU_SCALE: f64 = 1.506;

/// Assumption: the fitted fixed part is host-side and does not scale with the GPU clock; the
/// table-proportional part is GPU work and scales with 1/f from the table's clock (the maximum).
/// The CPU tables have no measured totals to calibrate against: they are taken as they are.
pub fn nominal_ms(unit: Unit, table_ms: f64, khz: u32) -> f64 {
    match unit {
        Unit::Gpu => GPU_FIXED_MS + GPU_SCALE * table_ms * f64::from(GPU_KHZ[GPU_KHZ.len() - 1]) / f64::from(khz),
        Unit::Cpu => table_ms * f64::from(CPU_KHZ[0]) / f64::from(khz),
    }
}

/// Per-frame multiplicative latency noise: a normal body and, on a share of frames, a spike
/// whose excess over the local median follows a Pareto law.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseModel {
    /// Standard deviation of the body (relative).
    pub sigma: f64,
    /// Share of frames that spike.
    pub p_spike: f64,
    /// Smallest spike excess (relative).
    pub spike_min: f64,
    /// Pareto exponent of the spike excess.
    pub alpha: f64,
}

/// Derived from the per-frame traces `logs/latencylog_80.txt` and
/// `logs/latencylog_ofa_classification.txt` (929 frames on the Xavier NX GPU, each divided by the
/// median of its 21-frame neighbourhood; first two frames after each switch dropped):
/// body 1.4826 x MAD = 4.52%; 4.31% of frames at +15% or more, whose median excess is what a Pareto
/// law from +15% with exponent 2.84 has. The traces' 99th percentile is +25.8%.
pub const JETSON_NOISE: NoiseModel = NoiseModel { sigma: 0.0452, p_spike: 0.0431, spike_min: 0.15, alpha: 2.84 };

impl NoiseModel {
    /// One draw.
    pub fn draw(&self, rng: &mut Rng) -> f64 {
        if rng.uniform() < self.p_spike {
            // Inverse CDF of the Pareto excess; 1 - u is in (0, 1].
            1.0 + self.spike_min * libm::pow(1.0 - rng.uniform(), -1.0 / self.alpha)
        } else {
            (1.0 + self.sigma * rng.normal()).max(0.5)
        }
    }

    /// The mean of a draw.
    pub fn mean(&self) -> f64 {
        1.0 - self.p_spike + self.p_spike * (1.0 + self.spike_min * self.alpha / (self.alpha - 1.0))
    }

    /// Probability that a draw is at most `x`.
    pub fn cdf(&self, x: f64) -> f64 {
        let body = 0.5 * (1.0 + libm::erf((x - 1.0) / (self.sigma * core::f64::consts::SQRT_2)));
        let excess = x - 1.0;
        let spike = if excess <= self.spike_min { 0.0 } else { 1.0 - libm::pow(self.spike_min / excess, self.alpha) };
        (1.0 - self.p_spike) * body + self.p_spike * spike
    }

    /// The `q` quantile of a draw (bisection on the CDF).
    pub fn quantile(&self, q: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, 100.0);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(mid) < q { lo = mid } else { hi = mid }
        }
        hi
    }
}

/// SplitMix64: a ten-line generator whose stream is fixed forever, so that a scenario's seed
/// gives the same trace on every machine and with every crate version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller through `libm`, identical on every architecture).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * core::f64::consts::PI * u2)
    }
}

/// Assumption (no power data in the reference): a CMOS model of the GPU rail, about 6 W running
/// at the top clock as in the Xavier NX's 15 W mode, with the supply voltage rising linearly from
/// 0.6 V at the lowest clock to 1.0 V at the highest: active `0.5 W + C V^2 f`, idle
/// `0.3 W + 5%` of the dynamic part (clock tree). The CPU cluster: 4 W active, 0.6 W idle.
pub fn power_point(unit: Unit, khz: u32) -> PowerPoint {
    match unit {
        Unit::Gpu => {
            let (lo, hi) = (f64::from(GPU_KHZ[0]), f64::from(GPU_KHZ[GPU_KHZ.len() - 1]));
            let f = f64::from(khz);
            let v = 0.6 + 0.4 * ((f - lo) / (hi - lo)).clamp(0.0, 1.0);
            let c = 5.5 / (hi * 1e-6);
            let dynamic = c * v * v * f * 1e-6;
            PowerPoint { freq_khz: khz, active_w: (0.5 + dynamic) as f32, idle_w: (0.3 + 0.05 * dynamic) as f32 }
        }
        Unit::Cpu => PowerPoint { freq_khz: khz, active_w: 4.0, idle_w: 0.6 },
    }
}

/// The power model of a unit as the core's table, for the energy mode.
pub fn power_table(unit: Unit) -> PowerTable {
    let mut points = [PowerPoint { freq_khz: 0, active_w: 0.0, idle_w: 0.0 }; GPU_KHZ.len()];
    let ops = operating_points(unit);
    for (p, &khz) in points.iter_mut().zip(ops) {
        *p = power_point(unit, khz);
    }
    PowerTable::new(unit, &points[..ops.len()]).expect("the built-in power model is a valid table")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_draws_match_the_model() {
        let n = JETSON_NOISE;
        let mut rng = Rng::new(7);
        let mut xs: Vec<f64> = (0..200_000).map(|_| n.draw(&mut rng)).collect();
        xs.sort_by(f64::total_cmp);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - n.mean()).abs() < 0.002, "{mean} {}", n.mean());
        for q in [0.5, 0.95, 0.99] {
            let sample = xs[(q * xs.len() as f64) as usize];
            assert!((sample - n.quantile(q)).abs() < 0.01, "q{q}: {sample} {}", n.quantile(q));
        }
        assert!((n.quantile(0.99) - 1.25).abs() < 0.01, "{}", n.quantile(0.99));
    }

    #[test]
    fn the_generator_stream_is_fixed() {
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn latency_scales_with_the_clock_and_power_with_voltage() {
        let top = nominal_ms(Unit::Gpu, 20.0, GPU_KHZ[10]);
        assert!((top - (11.875 + 1.506 * 20.0)).abs() < 1e-9);
        let half = nominal_ms(Unit::Gpu, 20.0, 554_625);
        assert!((half - (11.875 + 2.0 * 1.506 * 20.0)).abs() < 1e-9);
        let max = power_point(Unit::Gpu, GPU_KHZ[10]);
        assert!((max.active_w - 6.0).abs() < 1e-5);
        let t = power_table(Unit::Gpu);
        assert_eq!(t.points().len(), 11);
        assert!(t.points().windows(2).all(|w| w[0].active_w < w[1].active_w && w[0].idle_w < w[1].idle_w));
    }
}
