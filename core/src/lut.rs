//! The lookup table (LUT) of stored sub-networks: accuracy and latency per processing unit and
//! operating point, JSON in and out without allocation, Pareto and budget queries.
//!
//! The JSON schema is documented in `docs/lut-schema.md`.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::arch::{NUM_BLOCKS, NUM_UNITS, Supernet};
use crate::config::{ConfigError, ConfigParseError, Field, SubnetConfig};
use crate::json::{CountedList, JsonError};

/// The LUT format version this code reads and writes.
pub const LUT_VERSION: u32 = 1;
/// Default number of (unit, operating point) latencies an entry can hold.
pub const DEFAULT_POINTS: usize = 16;
/// Longest `source` note a LUT can carry, in bytes.
pub const SOURCE_LEN: usize = 192;

/// A processing unit of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Unit {
    /// The integrated GPU.
    Gpu,
    /// The CPU cluster.
    Cpu,
}

impl Unit {
    /// Every unit, in [`Unit::index`] order.
    pub const ALL: [Unit; 2] = [Unit::Gpu, Unit::Cpu];

    /// A dense index (GPU 0, CPU 1) for per-unit arrays.
    pub const fn index(self) -> usize {
        match self {
            Unit::Gpu => 0,
            Unit::Cpu => 1,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Gpu => "gpu",
            Unit::Cpu => "cpu",
        })
    }
}

/// Where an entry's top-1 comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Top1Source {
    /// Evaluated on images.
    Measured,
    /// From the accuracy predictor.
    Predicted,
}

/// A processing unit at one clock frequency.
///
/// `freq_khz == 0` means the unit's clocks were not pinned when the latency was profiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OperatingPoint {
    /// The unit.
    pub unit: Unit,
    /// Its clock in kHz (0: not pinned).
    pub freq_khz: u32,
}

/// Latency of one entry on one operating point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LatencyPoint {
    /// The unit.
    pub unit: Unit,
    /// Its clock in kHz (0: not pinned).
    pub freq_khz: u32,
    /// Mean latency of one frame in milliseconds.
    pub mean_ms: f32,
    /// Standard deviation of the frame latency in milliseconds.
    pub std_ms: f32,
}

impl LatencyPoint {
    /// The operating point this latency was measured at.
    pub const fn point(&self) -> OperatingPoint {
        OperatingPoint { unit: self.unit, freq_khz: self.freq_khz }
    }
}

/// One stored sub-network.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LutEntry<const P: usize = DEFAULT_POINTS> {
    /// The sub-network.
    pub config: SubnetConfig,
    /// ImageNet top-1 in percent.
    pub top1: f32,
    /// Whether `top1` was measured or predicted.
    pub top1_source: Top1Source,
    /// Latency per operating point it was profiled at.
    pub latency: heapless::Vec<LatencyPoint, P>,
}

impl<const P: usize> LutEntry<P> {
    /// An entry with no latency yet.
    pub const fn new(config: SubnetConfig, top1: f32, top1_source: Top1Source) -> Self {
        LutEntry { config, top1, top1_source, latency: heapless::Vec::new() }
    }

    /// The latency at an operating point, if profiled there.
    pub fn latency_at(&self, op: OperatingPoint) -> Option<&LatencyPoint> {
        self.latency.iter().find(|l| l.point() == op)
    }

    /// Mean latency in ms at an operating point, if profiled there.
    pub fn mean_ms(&self, op: OperatingPoint) -> Option<f32> {
        self.latency_at(op).map(|l| l.mean_ms)
    }

    /// Predicted mean latency in ms at `op`: the profiled value when the entry was profiled there;
    /// otherwise the nearest profiled clock of the same unit scaled by the clock ratio (as if all
    /// of the frame scaled with 1/f, which overestimates when lowering the clock: the safe side);
    /// an unpinned point (`freq_khz == 0`) is used as it is. `None` when the unit was never profiled.
    pub fn predict_ms(&self, op: OperatingPoint) -> Option<f32> {
        let mut best: Option<(f32, &LatencyPoint)> = None;
        for l in self.latency.iter().filter(|l| l.unit == op.unit) {
            if l.freq_khz == op.freq_khz {
                return Some(l.mean_ms);
            }
            // Distance in log-frequency terms without a logarithm: the larger of the two ratios.
            let d = if l.freq_khz == 0 || op.freq_khz == 0 {
                f32::INFINITY
            } else {
                let (a, b) = (l.freq_khz as f32, op.freq_khz as f32);
                if a > b { a / b } else { b / a }
            };
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, l));
            }
        }
        best.map(|(_, l)| {
            if l.freq_khz == 0 || op.freq_khz == 0 {
                l.mean_ms
            } else {
                l.mean_ms * l.freq_khz as f32 / op.freq_khz as f32
            }
        })
    }

    /// Set the latency at an operating point, replacing an earlier one; gives the point back when full.
    pub fn set_latency(&mut self, point: LatencyPoint) -> Result<(), LatencyPoint> {
        match self.latency.iter_mut().find(|l| l.point() == point.point()) {
            Some(slot) => {
                *slot = point;
                Ok(())
            }
            None => self.latency.push(point),
        }
    }
}

/// Why a LUT JSON file was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LutError {
    /// The text is not the expected JSON.
    Json(JsonError),
    /// `version` is not one this code reads.
    UnknownVersion {
        /// The version found.
        found: u32,
        /// The version supported.
        supported: u32,
    },
    /// `width` is not a usable width multiplier.
    Width,
    /// More entries than the table holds.
    Capacity {
        /// Entries the table holds.
        capacity: usize,
        /// Entries in the file.
        found: usize,
    },
    /// An entry's config lists have the wrong length.
    ListLength {
        /// Index of the entry.
        entry: usize,
        /// The list.
        field: Field,
        /// The length required.
        expected: u8,
        /// The length found.
        found: usize,
    },
    /// An entry's config is not a sub-network of the supernet.
    Config {
        /// Index of the entry.
        entry: usize,
        /// What is wrong.
        error: ConfigError,
    },
    /// An entry lists more latencies than an entry holds.
    TooManyPoints {
        /// Index of the entry.
        entry: usize,
        /// Points an entry holds.
        capacity: usize,
        /// Points in the file.
        found: usize,
    },
    /// An entry's top-1 or latency is not a finite non-negative number (top-1 at most 100).
    Value {
        /// Index of the entry.
        entry: usize,
    },
}

impl fmt::Display for LutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Json(e) => write!(f, "{e}"),
            Self::UnknownVersion { found, supported } => write!(
                f,
                "lut version {found} is not supported (this build reads version {supported}); regenerate it with `cargo xtask search` or `cargo xtask profile`"
            ),
            Self::Width => write!(f, "lut width must be a positive width multiplier such as 1.0 or 1.2"),
            Self::Capacity { capacity, found } => {
                write!(f, "lut has {found} entries but this table holds at most {capacity}")
            }
            Self::ListLength { entry, field, expected, found } => {
                write!(f, "entry {entry}: \"{field}\" has {found} entries, expected {expected}")
            }
            Self::Config { entry, error } => write!(f, "entry {entry}: {error}"),
            Self::TooManyPoints { entry, capacity, found } => {
                write!(f, "entry {entry}: {found} latency points but an entry holds at most {capacity}")
            }
            Self::Value { entry } => {
                write!(f, "entry {entry}: top1 must be within 0..=100 and latencies finite and non-negative")
            }
        }
    }
}

impl core::error::Error for LutError {}

/// A fixed-capacity table of at most `N` sub-networks, each with at most `P` latency points.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lut<const N: usize, const P: usize = DEFAULT_POINTS> {
    /// Width multiplier of the supernet the entries belong to.
    pub width: f32,
    /// How the table was made (free text, may be empty).
    pub source: heapless::String<SOURCE_LEN>,
    entries: heapless::Vec<LutEntry<P>, N>,
}

impl<const N: usize, const P: usize> Lut<N, P> {
    /// An empty table for a width multiplier.
    pub const fn new(width: f32) -> Self {
        Lut { width, source: heapless::String::new(), entries: heapless::Vec::new() }
    }

    /// The supernet the entries belong to.
    pub fn supernet(&self) -> Supernet {
        Supernet::new(self.width as f64)
    }

    /// The entries, in table order (indices are stable).
    pub fn entries(&self) -> &[LutEntry<P>] {
        &self.entries
    }

    /// Mutable access to the entries (e.g. to add profiled latencies).
    pub fn entries_mut(&mut self) -> &mut [LutEntry<P>] {
        &mut self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add an entry after validating its config; a full table gives the entry back.
    pub fn push(&mut self, entry: LutEntry<P>) -> Result<(), PushError<P>> {
        if let Err(e) = entry.config.validate(&self.supernet()) {
            return Err(PushError::Invalid(e, entry));
        }
        self.entries.push(entry).map_err(PushError::Full)
    }

    /// Index of the entry holding `config` (compared in canonical form).
    pub fn find(&self, config: &SubnetConfig) -> Option<usize> {
        self.entries.iter().position(|e| e.config == *config)
    }

    /// Entries with a latency on `op`'s unit, as (index, mean latency predicted at `op`, top-1);
    /// see [`LutEntry::predict_ms`].
    fn at(&self, op: OperatingPoint) -> impl Iterator<Item = (usize, f32, f32)> + '_ {
        self.entries.iter().enumerate().filter_map(move |(i, e)| e.predict_ms(op).map(|l| (i, l, e.top1)))
    }

    /// Pareto front on `op` (no entry is both faster and at least as accurate), fastest first.
    pub fn pareto(&self, op: OperatingPoint) -> heapless::Vec<usize, N> {
        let mut order: heapless::Vec<(usize, f32, f32), N> = self.at(op).collect();
        // Fastest first; among equal latencies the most accurate first, so it shadows the rest.
        order.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(b.2.total_cmp(&a.2)));
        let mut front = heapless::Vec::new();
        let mut best = f32::NEG_INFINITY;
        for (i, _, top1) in order {
            if top1 > best {
                best = top1;
                // Cannot overflow: at most N indices exist.
                let _ = front.push(i);
            }
        }
        front
    }

    /// The most accurate entry whose mean latency on `op` is within `budget_ms` (ties: faster).
    pub fn best_under(&self, op: OperatingPoint, budget_ms: f32) -> Option<usize> {
        self.at(op)
            .filter(|&(_, l, _)| l <= budget_ms)
            .max_by(|a, b| a.2.total_cmp(&b.2).then(b.1.total_cmp(&a.1)))
            .map(|(i, _, _)| i)
    }

    /// The most accurate entry strictly faster than entry `from` on `op` (one level down).
    pub fn next_faster(&self, op: OperatingPoint, from: usize) -> Option<usize> {
        let current = self.entries.get(from)?.predict_ms(op)?;
        self.at(op)
            .filter(|&(_, l, _)| l < current)
            .max_by(|a, b| a.2.total_cmp(&b.2).then(b.1.total_cmp(&a.1)))
            .map(|(i, _, _)| i)
    }

    /// The fastest entry strictly more accurate than entry `from` on `op` (one level up).
    pub fn next_more_accurate(&self, op: OperatingPoint, from: usize) -> Option<usize> {
        let current = self.entries.get(from)?.top1;
        self.at(op)
            .filter(|&(_, _, t)| t > current)
            .min_by(|a, b| a.1.total_cmp(&b.1).then(b.2.total_cmp(&a.2)))
            .map(|(i, _, _)| i)
    }

    /// Parse and validate a LUT JSON document (see `docs/lut-schema.md`).
    pub fn from_json(json: &[u8]) -> Result<Self, LutError> {
        // The version is read first so that a file from another version is named as such rather
        // than as whatever field it happens to lack.
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let (v, _) = serde_json_core::from_slice::<VersionOnly>(json).map_err(|e| LutError::Json(e.into()))?;
        if v.version != LUT_VERSION {
            return Err(LutError::UnknownVersion { found: v.version, supported: LUT_VERSION });
        }
        // `source` is free text: its escapes are decoded here so that what `to_json` writes reads back
        // the same (found by `cargo xtask fuzz`); a longer text than a LUT holds is refused.
        let mut unescaped = [0u8; SOURCE_LEN];
        let (wire, _) = serde_json_core::from_slice_escaped::<WireLut<N, P>>(json, &mut unescaped)
            .map_err(|e| LutError::Json(e.into()))?;
        if !(wire.width.is_finite() && wire.width > 0.0 && wire.width <= 4.0) {
            return Err(LutError::Width);
        }
        if wire.entries.found > N {
            return Err(LutError::Capacity { capacity: N, found: wire.entries.found });
        }
        let net = Supernet::new(wire.width as f64);
        let mut lut = Lut::new(wire.width);
        lut.source = wire.source.unwrap_or_default();
        for (index, w) in wire.entries.items.into_iter().enumerate() {
            let entry = w.into_entry(index)?;
            entry.config.validate(&net).map_err(|error| LutError::Config { entry: index, error })?;
            // Cannot overflow: the count was checked against N above.
            let _ = lut.entries.push(entry);
        }
        Ok(lut)
    }

    /// Write the table as JSON into `buf`, returning the bytes written.
    pub fn to_json(&self, buf: &mut [u8]) -> Result<usize, JsonError> {
        serde_json_core::to_slice(self, buf).map_err(JsonError::from)
    }
}

/// Why [`Lut::push`] refused an entry; the entry is given back.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PushError<const P: usize> {
    /// The table is full.
    Full(LutEntry<P>),
    /// The config is not a sub-network of the table's supernet.
    Invalid(ConfigError, LutEntry<P>),
}

/// An entry as it appears in JSON, before its lengths and values are checked.
#[derive(Deserialize)]
struct WireEntry<const P: usize> {
    ks: CountedList<u8, NUM_BLOCKS>,
    e: CountedList<u8, NUM_BLOCKS>,
    d: CountedList<u8, NUM_UNITS>,
    r: u16,
    top1: f32,
    top1_source: Top1Source,
    latency: CountedList<LatencyPoint, P>,
}

impl<const P: usize> WireEntry<P> {
    fn into_entry(self, entry: usize) -> Result<LutEntry<P>, LutError> {
        let lists = |e: ConfigParseError| match e {
            ConfigParseError::ListLength { field, expected, found } => {
                LutError::ListLength { entry, field, expected, found }
            }
            ConfigParseError::Invalid(error) => LutError::Config { entry, error },
            ConfigParseError::Json(j) => LutError::Json(j),
        };
        let config = SubnetConfig {
            ks: self.ks.exact(Field::Ks).map_err(lists)?,
            e: self.e.exact(Field::E).map_err(lists)?,
            d: self.d.exact(Field::D).map_err(lists)?,
            r: self.r,
        };
        if self.latency.found > P {
            return Err(LutError::TooManyPoints { entry, capacity: P, found: self.latency.found });
        }
        let ok = |v: f32| v.is_finite() && v >= 0.0;
        if !(ok(self.top1) && self.top1 <= 100.0 && self.latency.items.iter().all(|l| ok(l.mean_ms) && ok(l.std_ms))) {
            return Err(LutError::Value { entry });
        }
        Ok(LutEntry { config, top1: self.top1, top1_source: self.top1_source, latency: self.latency.items })
    }
}

/// The entry list, counted so that an over-full file is reported with its size.
struct WireEntries<const N: usize, const P: usize> {
    items: heapless::Vec<WireEntry<P>, N>,
    found: usize,
}

impl<'de, const N: usize, const P: usize> Deserialize<'de> for WireEntries<N, P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize, const P: usize>(PhantomData<()>);
        impl<'de, const N: usize, const P: usize> Visitor<'de> for V<N, P> {
            type Value = WireEntries<N, P>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = WireEntries { items: heapless::Vec::new(), found: 0 };
                while out.found < N {
                    match seq.next_element::<WireEntry<P>>()? {
                        Some(e) => {
                            let _ = out.items.push(e);
                            out.found += 1;
                        }
                        None => return Ok(out),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    out.found += 1;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V::<N, P>(PhantomData))
    }
}

#[derive(Deserialize)]
struct WireLut<const N: usize, const P: usize> {
    #[allow(dead_code)]
    version: u32,
    width: f32,
    #[serde(default)]
    source: Option<heapless::String<SOURCE_LEN>>,
    entries: WireEntries<N, P>,
}

impl<const P: usize> Serialize for LutEntry<P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = &self.config;
        let mut st = s.serialize_struct("LutEntry", 7)?;
        st.serialize_field("ks", &c.ks[..])?;
        st.serialize_field("e", &c.e[..])?;
        st.serialize_field("d", &c.d[..])?;
        st.serialize_field("r", &c.r)?;
        st.serialize_field("top1", &self.top1)?;
        st.serialize_field("top1_source", &self.top1_source)?;
        st.serialize_field("latency", &self.latency[..])?;
        st.end()
    }
}

impl<const N: usize, const P: usize> Serialize for Lut<N, P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Lut", 4)?;
        st.serialize_field("version", &LUT_VERSION)?;
        st.serialize_field("width", &self.width)?;
        st.serialize_field("source", self.source.as_str())?;
        st.serialize_field("entries", &self.entries[..])?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{DEPTHS, EXPAND_RATIOS, KERNEL_SIZES};

    const GPU: OperatingPoint = OperatingPoint { unit: Unit::Gpu, freq_khz: 1_109_250 };
    const CPU: OperatingPoint = OperatingPoint { unit: Unit::Cpu, freq_khz: 1_907_200 };

    /// A deterministic 64-entry table with varied configs and two operating points.
    fn table64() -> Lut<64> {
        let mut lut = Lut::new(1.2);
        lut.source.push_str("unit test").unwrap();
        for i in 0..64usize {
            let mut c = SubnetConfig::uniform(3, 3, 2, 160 + 4 * (i % 17) as u16);
            for b in 0..20 {
                c.ks[b] = KERNEL_SIZES[(i + b) % 3];
                c.e[b] = EXPAND_RATIOS[(i * 7 + b) % 3];
            }
            for u in 0..5 {
                c.d[u] = DEPTHS[(i + u) % 3];
            }
            let mut e = LutEntry::new(
                c,
                70.0 + i as f32 * 0.2,
                if i % 2 == 0 { Top1Source::Predicted } else { Top1Source::Measured },
            );
            e.set_latency(LatencyPoint {
                unit: Unit::Gpu,
                freq_khz: GPU.freq_khz,
                mean_ms: 10.0 + i as f32 * 0.5,
                std_ms: 0.3,
            })
            .unwrap();
            e.set_latency(LatencyPoint {
                unit: Unit::Cpu,
                freq_khz: CPU.freq_khz,
                mean_ms: 100.0 + ((i * 37) % 64) as f32,
                std_ms: 2.5,
            })
            .unwrap();
            lut.push(e).unwrap();
        }
        lut
    }

    fn to_string<const N: usize>(lut: &Lut<N>) -> String {
        let mut buf = vec![0u8; 64 * 1024];
        let n = lut.to_json(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_64_entry_table_round_trips_through_json() {
        let lut = table64();
        let text = to_string(&lut);
        let back = Lut::<64>::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, lut);
        assert_eq!(back.len(), 64);
        assert_eq!(back.source.as_str(), "unit test");
        assert_eq!(to_string(&back), text);
    }

    #[test]
    fn a_source_with_escapes_round_trips() {
        // Regression (cargo xtask fuzz, lut_json): escapes in `source` were kept undecoded.
        let mut lut = Lut::<4>::new(1.2);
        lut.source.push_str("say \"hi\" \\ \u{6}").unwrap();
        let text = to_string(&lut);
        assert_eq!(Lut::<4>::from_json(text.as_bytes()), Ok(lut));
        let long = format!("{{\"version\":1,\"width\":1.2,\"source\":\"{}\",\"entries\":[]}}", "\\n".repeat(200));
        assert!(matches!(Lut::<4>::from_json(long.as_bytes()), Err(LutError::Json(_))));
    }

    #[test]
    fn over_capacity_is_its_own_error() {
        let text = to_string(&table64());
        assert_eq!(Lut::<32>::from_json(text.as_bytes()), Err(LutError::Capacity { capacity: 32, found: 64 }));
    }

    #[test]
    fn unknown_version_is_its_own_error() {
        let text = to_string(&table64()).replacen("\"version\":1", "\"version\":7", 1);
        assert_eq!(Lut::<64>::from_json(text.as_bytes()), Err(LutError::UnknownVersion { found: 7, supported: 1 }));
        assert!(matches!(Lut::<64>::from_json(b"{\"width\":1.2}"), Err(LutError::Json(_))));
    }

    /// The first entry of `table64()` as JSON, with `edit` applied to its text.
    fn one_entry(edit: impl Fn(String) -> String) -> Result<Lut<4>, LutError> {
        let mut lut = Lut::<4>::new(1.2);
        lut.push(table64().entries()[0].clone()).unwrap();
        Lut::<4>::from_json(edit(to_string(&lut)).as_bytes())
    }

    #[test]
    fn wrong_list_lengths_name_the_list() {
        let r = one_entry(|t| t.replacen("\"ks\":[3,", "\"ks\":[", 1));
        assert_eq!(r, Err(LutError::ListLength { entry: 0, field: Field::Ks, expected: 20, found: 19 }));
        let r = one_entry(|t| t.replacen("\"e\":[", "\"e\":[3,", 1));
        assert_eq!(r, Err(LutError::ListLength { entry: 0, field: Field::E, expected: 20, found: 21 }));
        let r = one_entry(|t| t.replacen("\"d\":[", "\"d\":[2,", 1));
        assert_eq!(r, Err(LutError::ListLength { entry: 0, field: Field::D, expected: 5, found: 6 }));
    }

    #[test]
    fn values_outside_the_choices_are_typed() {
        let r = one_entry(|t| t.replacen("\"ks\":[3,", "\"ks\":[4,", 1));
        assert_eq!(r, Err(LutError::Config { entry: 0, error: ConfigError::KernelSize { block: 0, value: 4 } }));
        let r = one_entry(|t| t.replacen("\"e\":[3,", "\"e\":[5,", 1));
        assert_eq!(r, Err(LutError::Config { entry: 0, error: ConfigError::ExpandRatio { block: 0, value: 5 } }));
        let r = one_entry(|t| t.replacen("\"d\":[2,", "\"d\":[1,", 1));
        assert_eq!(r, Err(LutError::Config { entry: 0, error: ConfigError::Depth { unit: 0, value: 1 } }));
        let r = one_entry(|t| t.replacen("\"r\":160", "\"r\":240", 1));
        assert_eq!(
            r,
            Err(LutError::Config { entry: 0, error: ConfigError::ResolutionRange { value: 240, min: 160, max: 224 } })
        );
        let r = one_entry(|t| t.replacen("\"r\":160", "\"r\":162", 1));
        assert_eq!(r, Err(LutError::Config { entry: 0, error: ConfigError::ResolutionStep { value: 162, step: 4 } }));
        let r = one_entry(|t| t.replacen("\"top1\":70.0", "\"top1\":170.0", 1));
        assert_eq!(r, Err(LutError::Value { entry: 0 }));
        let r = one_entry(|t| t.replacen("\"width\":1.2", "\"width\":-1", 1));
        assert_eq!(r, Err(LutError::Width));
    }

    #[test]
    fn too_many_latency_points_is_typed() {
        let mut lut = Lut::<4>::new(1.2);
        lut.push(table64().entries()[0].clone()).unwrap();
        let text = to_string(&lut);
        assert_eq!(
            Lut::<4, 1>::from_json(text.as_bytes()),
            Err(LutError::TooManyPoints { entry: 0, capacity: 1, found: 2 })
        );
    }

    #[test]
    fn pareto_and_budget_queries() {
        let mut lut = Lut::<8>::new(1.2);
        // (top1, gpu ms): entry 2 is dominated by entry 1, entry 4 has no GPU latency.
        for (i, (top1, ms)) in
            [(75.0, 10.0), (78.0, 15.0), (77.0, 20.0), (80.0, 25.0), (90.0, -1.0)].into_iter().enumerate()
        {
            let mut e = LutEntry::new(SubnetConfig::uniform(3, 3, 2, 160 + 4 * i as u16), top1, Top1Source::Predicted);
            if ms > 0.0 {
                e.set_latency(LatencyPoint { unit: Unit::Gpu, freq_khz: GPU.freq_khz, mean_ms: ms, std_ms: 0.1 })
                    .unwrap();
            }
            lut.push(e).unwrap();
        }
        assert_eq!(&lut.pareto(GPU)[..], &[0, 1, 3]);
        assert!(lut.pareto(CPU).is_empty());
        assert_eq!(lut.best_under(GPU, 21.0), Some(1));
        assert_eq!(lut.best_under(GPU, 9.0), None);
        assert_eq!(lut.best_under(GPU, 100.0), Some(3));
        assert_eq!(lut.next_faster(GPU, 3), Some(1));
        assert_eq!(lut.next_faster(GPU, 0), None);
        assert_eq!(lut.next_more_accurate(GPU, 1), Some(3));
        assert_eq!(lut.next_more_accurate(GPU, 3), None);
        assert_eq!(lut.find(&SubnetConfig::uniform(3, 3, 2, 168)), Some(2));
    }

    #[test]
    fn latency_is_predicted_at_clocks_not_profiled() {
        let mut e = LutEntry::<4>::new(SubnetConfig::uniform(3, 3, 2, 160), 70.0, Top1Source::Predicted);
        assert_eq!(e.predict_ms(GPU), None);
        let at = |f, ms| LatencyPoint { unit: Unit::Gpu, freq_khz: f, mean_ms: ms, std_ms: 0.0 };
        e.set_latency(at(1_000_000, 10.0)).unwrap();
        e.set_latency(at(500_000, 16.0)).unwrap();
        let op = |f| OperatingPoint { unit: Unit::Gpu, freq_khz: f };
        assert_eq!(e.predict_ms(op(500_000)), Some(16.0));
        // Nearest profiled clock, scaled by the clock ratio.
        assert_eq!(e.predict_ms(op(250_000)), Some(32.0));
        assert_eq!(e.predict_ms(op(2_000_000)), Some(5.0));
        assert_eq!(e.predict_ms(CPU), None);
        // An unpinned point stands for any clock.
        let mut u = LutEntry::<4>::new(SubnetConfig::uniform(3, 3, 2, 160), 70.0, Top1Source::Predicted);
        u.set_latency(at(0, 12.0)).unwrap();
        assert_eq!(u.predict_ms(op(250_000)), Some(12.0));
    }

    #[test]
    fn push_refuses_invalid_and_full() {
        let mut lut = Lut::<1>::new(1.2);
        let bad = LutEntry::new(SubnetConfig::uniform(3, 3, 2, 128), 70.0, Top1Source::Predicted);
        assert!(matches!(lut.push(bad), Err(PushError::Invalid(ConfigError::ResolutionRange { .. }, _))));
        let good = LutEntry::new(SubnetConfig::uniform(3, 3, 2, 160), 70.0, Top1Source::Predicted);
        lut.push(good.clone()).unwrap();
        assert_eq!(lut.push(good.clone()), Err(PushError::Full(good)));
    }
}
