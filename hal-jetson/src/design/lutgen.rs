//! Writing the search's Pareto sets as the core's LUT (`docs/lut-schema.md`), and checking a
//! committed LUT against a fresh run.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use dynofa_core::lut::{LUT_VERSION, LatencyPoint, Lut, LutEntry, Top1Source, Unit};
use dynofa_core::{SubnetConfig, Supernet};

use super::DesignError;
use super::fit::LatencySource;
use super::search::Found;

/// Entries a generated LUT may hold.
pub const LUT_CAPACITY: usize = 64;

/// The LUT type the design tools write.
pub type DesignLut = Lut<LUT_CAPACITY>;

/// One processing unit's latencies (per-op tables or a model fitted on a LUT) and the clock they
/// were measured at.
#[derive(Debug, Clone)]
pub struct UnitTables {
    /// The unit.
    pub unit: Unit,
    /// Its clock in kHz (0: not pinned).
    pub freq_khz: u32,
    /// Its latencies.
    pub latency: LatencySource,
}

/// A LUT of the given entries (duplicates of an earlier entry's sub-network are skipped), each
/// with the latency points that `latency` gives for it.
pub fn lut_of(
    net: &Supernet,
    entries: impl IntoIterator<Item = (SubnetConfig, f32, Top1Source)>,
    source: &str,
    mut latency: impl FnMut(&SubnetConfig) -> Result<Vec<LatencyPoint>, DesignError>,
) -> Result<DesignLut, DesignError> {
    let mut lut = DesignLut::new(net.width_mult as f32);
    lut.source.push_str(source).map_err(|_| {
        DesignError::Lut(format!("lut source note is {} bytes, at most {} fit", source.len(), lut.source.capacity()))
    })?;
    for (config, top1, top1_source) in entries {
        if lut.find(&config).is_some() {
            continue;
        }
        let mut entry = LutEntry::new(config.canonical(), top1, top1_source);
        for point in latency(&config)? {
            entry.set_latency(point).map_err(|_| DesignError::Lut("too many operating points for one entry".into()))?;
        }
        lut.push(entry).map_err(|_| DesignError::Lut(format!("more than {LUT_CAPACITY} entries")))?;
    }
    Ok(lut)
}

/// A LUT holding every unit's Pareto set; each entry carries its latency on every unit, so
/// `Lut::pareto(unit)` gives each unit's front and every entry can run anywhere.
pub fn build_lut(
    net: &Supernet,
    units: &[UnitTables],
    fronts: &[Vec<Found>],
    source: &str,
) -> Result<DesignLut, DesignError> {
    let entries = fronts.iter().flatten().map(|f| (f.config, f.top1, Top1Source::Predicted));
    lut_of(net, entries, source, |cfg| {
        units
            .iter()
            .map(|u| {
                let l = u.latency.network(net, cfg)?;
                Ok(LatencyPoint {
                    unit: u.unit,
                    freq_khz: u.freq_khz,
                    mean_ms: l.mean_ms as f32,
                    std_ms: l.std_ms as f32,
                })
            })
            .collect()
    })
}

/// The LUT as JSON with one entry per line (readable diffs), ending in a newline.
pub fn to_json(lut: &DesignLut) -> String {
    fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
        serde_json::to_string(v).expect("LUT values always serialise")
    }
    let entries: Vec<String> = lut.entries().iter().map(|e| format!("    {}", json(e))).collect();
    format!(
        "{{\n  \"version\": {},\n  \"width\": {},\n  \"source\": {},\n  \"entries\": [\n{}\n  ]\n}}\n",
        LUT_VERSION,
        json(&lut.width),
        json(&lut.source.as_str()),
        entries.join(",\n")
    )
}

/// Read a LUT file.
pub fn read_lut(path: &Path) -> Result<DesignLut, DesignError> {
    let text = std::fs::read(path).map_err(|source| DesignError::Io { path: path.to_path_buf(), source })?;
    DesignLut::from_json(&text).map_err(|e| DesignError::Lut(format!("{}: {e}", path.display())))
}

fn describe(c: &SubnetConfig) -> String {
    format!("ks {:?} e {:?} d {:?} r {}", c.ks, c.e, c.d, c.r)
}

/// What [`check`] compares besides the sub-networks and their top-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckLatency {
    /// Latencies too (derived figures that a rerun reproduces).
    Compare,
    /// Not latencies (measurements, which no rerun reproduces).
    Ignore,
}

/// Compare a committed LUT with a fresh one: the same width and entries (configs exactly, top-1
/// and, if asked, latencies to 1e-4 relative); the `source` note, which holds a date, is not
/// compared.
pub fn check(path: &Path, fresh: &DesignLut, latency: CheckLatency) -> Result<(), DesignError> {
    let old = read_lut(path)?;
    let stale = |why: String| {
        DesignError::Lut(format!(
            "{} is stale: {why}; regenerate it with the command in its \"source\" field",
            path.display()
        ))
    };
    if old.width != fresh.width {
        return Err(stale(format!("width {} vs {}", old.width, fresh.width)));
    }
    if old.len() != fresh.len() {
        return Err(stale(format!("{} entries vs {} now", old.len(), fresh.len())));
    }
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0);
    for (i, (a, b)) in old.entries().iter().zip(fresh.entries()).enumerate() {
        if a.config != b.config {
            return Err(stale(format!("entry {i} is {} but now {}", describe(&a.config), describe(&b.config))));
        }
        let same_latency = latency == CheckLatency::Ignore
            || a.latency.len() == b.latency.len()
                && a.latency
                    .iter()
                    .zip(&b.latency)
                    .all(|(x, y)| x.point() == y.point() && close(x.mean_ms, y.mean_ms) && close(x.std_ms, y.std_ms));
        if !close(a.top1, b.top1) || a.top1_source != b.top1_source || !same_latency {
            return Err(stale(format!("entry {i} has other top-1 or latency ({a:?} vs {b:?})")));
        }
    }
    Ok(())
}

/// The sub-networks of a file with their top-1: a LUT, or a JSON list of OFA config dicts (whose
/// top-1 `predict` gives).
pub fn read_subnets(
    path: &Path,
    net: &Supernet,
    predict: impl Fn(&SubnetConfig) -> Result<f32, DesignError>,
) -> Result<Vec<(SubnetConfig, f32, Top1Source)>, DesignError> {
    let text = std::fs::read(path).map_err(|source| DesignError::Io { path: path.to_path_buf(), source })?;
    if let Ok(lut) = DesignLut::from_json(&text) {
        return Ok(lut.entries().iter().map(|e| (e.config, e.top1, e.top1_source)).collect());
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&text).map_err(|source| DesignError::Json { path: path.to_path_buf(), source })?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let cfg = SubnetConfig::from_json(v.to_string().as_bytes(), net).map_err(|e| {
                DesignError::Lut(format!("{}: neither a LUT nor a list of OFA configs (item {i}: {e})", path.display()))
            })?;
            Ok((cfg, predict(&cfg)?, Top1Source::Predicted))
        })
        .collect()
}

/// A short description of this machine: the board model where the device tree names one (a
/// Jetson), else the CPU model, with the core count.
pub fn machine() -> String {
    let board = std::fs::read_to_string("/proc/device-tree/model").ok().map(|m| m.trim_end_matches('\0').to_string());
    let cpu = || {
        std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
    };
    let name = board.or_else(cpu).unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{name}, {cores} cores")
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::testdata::{gpu_tables, nets_6};

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
        assert_eq!(today().len(), 10);
    }

    #[test]
    fn lut_round_trips_and_check_finds_staleness() {
        let net = Supernet::W1_2;
        let units = [UnitTables { unit: Unit::Gpu, freq_khz: 1_109_250, latency: LatencySource::Tables(gpu_tables()) }];
        let found: Vec<Found> = nets_6()
            .iter()
            .map(|l| Found { config: l.config, top1: 80.0 + l.level as f32, latency_ms: l.lut_gpu_ms })
            .collect();
        let lut = build_lut(&net, &units, &[found.clone(), found[..2].to_vec()], "test").unwrap();
        assert_eq!(lut.len(), 6);
        let gpu = dynofa_core::OperatingPoint { unit: Unit::Gpu, freq_khz: 1_109_250 };
        assert!((lut.entries()[5].mean_ms(gpu).unwrap() - 30.171).abs() < 1e-3);

        let dir = std::env::temp_dir().join(format!("dynofa-lutgen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lut.json");
        std::fs::write(&path, to_json(&lut)).unwrap();
        assert_eq!(read_lut(&path).unwrap(), lut);
        check(&path, &lut, CheckLatency::Compare).unwrap();
        let mut other = found.clone();
        other[3].top1 += 0.5;
        let changed = build_lut(&net, &units, &[other], "test").unwrap();
        let err = check(&path, &changed, CheckLatency::Compare).unwrap_err().to_string();
        let mut slower = lut.clone();
        slower.entries_mut()[0].latency[0].mean_ms += 1.0;
        check(&path, &slower, CheckLatency::Ignore).unwrap();
        assert!(check(&path, &slower, CheckLatency::Compare).is_err());
        assert!(err.contains("is stale: entry 3"), "{err}");

        let list = dir.join("configs.json");
        std::fs::write(&list, r#"[{"ks":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"e":[3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3],"d":[2,2,2,2,2],"r":[160]}]"#).unwrap();
        let subnets = read_subnets(&list, &net, |_| Ok(70.0)).unwrap();
        assert_eq!(subnets, vec![(SubnetConfig::uniform(3, 3, 2, 160), 70.0, Top1Source::Predicted)]);
        assert_eq!(read_subnets(&path, &net, |_| Ok(0.0)).unwrap().len(), 6);
        std::fs::write(&list, "[{\"ks\": 3}]").unwrap();
        assert!(read_subnets(&list, &net, |_| Ok(0.0)).unwrap_err().to_string().contains("item 0"));
        std::fs::remove_dir_all(&dir).unwrap();
        let long = "x".repeat(300);
        assert!(build_lut(&net, &units, &[found], &long).unwrap_err().to_string().contains("300 bytes"));
    }
}
