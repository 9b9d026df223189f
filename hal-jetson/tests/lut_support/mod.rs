//! Shared by the run tests: a small LUT of uniform sub-networks, written as `dynofa` writes LUTs.

use std::path::{Path, PathBuf};

use dynofa_core::lut::{LatencyPoint, LutEntry, Unit};
use dynofa_core::{SubnetConfig, Top1Source};
use dynofa_hal_jetson::design::lutgen::{self, DesignLut};

/// `subnets` (kernel, expand, depth, resolution, top-1; uniform) as a w1.2 LUT at
/// `dir/small.json`, each with a 1 ms latency on `unit` only, so that a run on the other unit times
/// them itself.
pub fn write_lut(dir: &Path, subnets: &[(u8, u8, u8, u16, f32)], unit: Unit) -> PathBuf {
    let mut lut = DesignLut::new(1.2);
    lut.source.push_str("test").unwrap();
    for &(k, e, d, r, top1) in subnets {
        let mut entry = LutEntry::new(SubnetConfig::uniform(k, e, d, r), top1, Top1Source::Predicted);
        entry.set_latency(LatencyPoint { unit, freq_khz: 0, mean_ms: 1.0, std_ms: 0.1 }).unwrap();
        lut.push(entry).unwrap();
    }
    let path = dir.join("small.json");
    std::fs::write(&path, lutgen::to_json(&lut)).unwrap();
    path
}
