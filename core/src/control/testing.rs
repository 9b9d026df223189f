//! Small LUTs and a noise source for the controllers' unit tests.

use crate::config::SubnetConfig;
use crate::lut::{LatencyPoint, Lut, LutEntry, OperatingPoint, Top1Source, Unit};

pub const GPU: OperatingPoint = OperatingPoint { unit: Unit::Gpu, freq_khz: 1_109_250 };
pub const GPU_LOW: OperatingPoint = OperatingPoint { unit: Unit::Gpu, freq_khz: 599_250 };

fn entry(i: usize, top1: f32) -> LutEntry {
    LutEntry::new(SubnetConfig::uniform(3, 3, 2, 160 + 4 * i as u16), top1, Top1Source::Measured)
}

fn point(op: OperatingPoint, ms: f32) -> LatencyPoint {
    LatencyPoint { unit: op.unit, freq_khz: op.freq_khz, mean_ms: ms, std_ms: 0.05 * ms }
}

/// A LUT of (top1, GPU mean ms) levels with a 5% spread.
pub fn lut(levels: &[(f32, f32)]) -> Lut<16> {
    let mut lut = Lut::new(1.2);
    for (i, &(top1, ms)) in levels.iter().enumerate() {
        let mut e = entry(i, top1);
        e.set_latency(point(GPU, ms)).unwrap();
        lut.push(e).unwrap();
    }
    lut
}

/// As [`lut`], also profiled at [`GPU_LOW`] where every latency doubles.
pub fn lut_dvfs(levels: &[(f32, f32)]) -> Lut<16> {
    let mut lut = lut(levels);
    for e in lut.entries_mut() {
        let ms = e.mean_ms(GPU).unwrap();
        e.set_latency(point(GPU_LOW, 2.0 * ms)).unwrap();
    }
    lut
}

/// Multiplicative frame noise with mean near 1: a 3% spread and 4% of frames +15..+45%.
pub fn noise(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    move || {
        // A sum of four uniforms: near-normal with a standard deviation of 0.03.
        let body = 1.0 + 0.05 * (uniform() + uniform() + uniform() + uniform() - 2.0);
        if uniform() < 0.04 { body * (1.15 + 0.3 * uniform()) } else { body }
    }
}
