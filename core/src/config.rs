//! Sub-network configurations: validation, canonical form, compact ids and OFA's JSON dict.

use core::fmt;
use core::str::FromStr;

use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::arch::{DEPTHS, EXPAND_RATIOS, KERNEL_SIZES, MAX_DEPTH, MAX_RESOLUTION, NUM_BLOCKS, NUM_UNITS};
use crate::arch::{RESOLUTION_STEP, Supernet};
use crate::json::{CountedList, JsonError};

/// One sub-network of the supernet: OFA's `{"ks": [20], "e": [20], "d": [5], "r": R}`.
///
/// Equality and hashing go through [`SubnetConfig::canonical`]: two configs that differ only in
/// the entries of skipped blocks are the same network.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubnetConfig {
    /// Depthwise kernel size of each elastic block (3, 5 or 7).
    pub ks: [u8; NUM_BLOCKS],
    /// Expand ratio of each elastic block (3, 4 or 6).
    pub e: [u8; NUM_BLOCKS],
    /// Depth of each unit (2, 3 or 4).
    pub d: [u8; NUM_UNITS],
    /// Input resolution in pixels.
    pub r: u16,
}

/// Why a sub-network configuration is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// `ks[block]` is not 3, 5 or 7.
    KernelSize {
        /// Index into `ks` (0..20).
        block: u8,
        /// The value found.
        value: u8,
    },
    /// `e[block]` is not 3, 4 or 6.
    ExpandRatio {
        /// Index into `e` (0..20).
        block: u8,
        /// The value found.
        value: u8,
    },
    /// `d[unit]` is not 2, 3 or 4.
    Depth {
        /// Index into `d` (0..5).
        unit: u8,
        /// The value found.
        value: u8,
    },
    /// `r` is outside the width's range.
    ResolutionRange {
        /// The value found.
        value: u16,
        /// Smallest allowed.
        min: u16,
        /// Largest allowed.
        max: u16,
    },
    /// `r` is not a multiple of the resolution step.
    ResolutionStep {
        /// The value found.
        value: u16,
        /// The required step.
        step: u16,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::KernelSize { block, value } => {
                write!(f, "ks[{block}] = {value}: kernel size must be 3, 5 or 7")
            }
            Self::ExpandRatio { block, value } => {
                write!(f, "e[{block}] = {value}: expand ratio must be 3, 4 or 6")
            }
            Self::Depth { unit, value } => write!(f, "d[{unit}] = {value}: depth must be 2, 3 or 4"),
            Self::ResolutionRange { value, min, max } => {
                write!(f, "r = {value}: resolution must be within {min}..={max} for this width")
            }
            Self::ResolutionStep { value, step } => {
                write!(f, "r = {value}: resolution must be a multiple of {step}")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// A compact, stable id of a canonical sub-network: a mixed-radix number of its active choices.
///
/// Its text form is 16 characters of Crockford base32, e.g. `0000000000000000` for the smallest
/// w1.0 network at r = 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubnetId(pub u128);

const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_CHARS: usize = 16;
const NUM_RESOLUTIONS: u128 = ((MAX_RESOLUTION - 128) / RESOLUTION_STEP + 1) as u128;

impl fmt::Display for SubnetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_CHARS];
        let mut v = self.0;
        for c in buf.iter_mut().rev() {
            *c = BASE32[(v % 32) as usize];
            v /= 32;
        }
        // The alphabet is ASCII, so this cannot fail.
        f.write_str(core::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// The text is not a sub-network id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ParseIdError;

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sub-network id is {ID_CHARS} characters of lower-case Crockford base32")
    }
}

impl FromStr for SubnetId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != ID_CHARS {
            return Err(ParseIdError);
        }
        s.bytes()
            .try_fold(0u128, |acc, ch| {
                let digit = BASE32.iter().position(|&b| b == ch).ok_or(ParseIdError)?;
                Ok(acc * 32 + digit as u128)
            })
            .map(SubnetId)
    }
}

fn choice_index(options: &[u8; 3], v: u8) -> u128 {
    options.iter().position(|&o| o == v).unwrap_or(0) as u128
}

impl SubnetConfig {
    /// The same kernel size, expand ratio and depth everywhere.
    pub const fn uniform(ks: u8, e: u8, d: u8, r: u16) -> Self {
        SubnetConfig { ks: [ks; NUM_BLOCKS], e: [e; NUM_BLOCKS], d: [d; NUM_UNITS], r }
    }

    /// Whether elastic block `block` (1..=20) runs under this config's depths.
    pub const fn is_active(&self, block: usize) -> bool {
        let unit = Supernet::unit_of(block);
        (block - 1) % MAX_DEPTH < self.d[unit] as usize
    }

    /// Check every field against the supernet's choices; the first bad field is reported.
    pub fn validate(&self, net: &Supernet) -> Result<(), ConfigError> {
        for (i, &v) in self.ks.iter().enumerate() {
            if !KERNEL_SIZES.contains(&v) {
                return Err(ConfigError::KernelSize { block: i as u8, value: v });
            }
        }
        for (i, &v) in self.e.iter().enumerate() {
            if !EXPAND_RATIOS.contains(&v) {
                return Err(ConfigError::ExpandRatio { block: i as u8, value: v });
            }
        }
        for (i, &v) in self.d.iter().enumerate() {
            if !DEPTHS.contains(&v) {
                return Err(ConfigError::Depth { unit: i as u8, value: v });
            }
        }
        let (min, max) = (net.min_resolution(), MAX_RESOLUTION);
        if self.r < min || self.r > max {
            return Err(ConfigError::ResolutionRange { value: self.r, min, max });
        }
        if !self.r.is_multiple_of(RESOLUTION_STEP) {
            return Err(ConfigError::ResolutionStep { value: self.r, step: RESOLUTION_STEP });
        }
        Ok(())
    }

    /// The same network with the entries of skipped blocks set to the smallest choices (3 and 3).
    pub fn canonical(&self) -> Self {
        let mut c = *self;
        for b in 1..=NUM_BLOCKS {
            if !c.is_active(b) {
                c.ks[b - 1] = KERNEL_SIZES[0];
                c.e[b - 1] = EXPAND_RATIOS[0];
            }
        }
        c
    }

    /// Compact stable id of the canonical form. Defined for valid configs.
    pub fn id(&self) -> SubnetId {
        let c = self.canonical();
        let mut v: u128 = 0;
        for &d in &c.d {
            v = v * 3 + choice_index(&DEPTHS, d);
        }
        for b in 0..NUM_BLOCKS {
            v = v * 3 + choice_index(&KERNEL_SIZES, c.ks[b]);
            v = v * 3 + choice_index(&EXPAND_RATIOS, c.e[b]);
        }
        let r_index = (c.r.saturating_sub(128) / RESOLUTION_STEP) as u128;
        SubnetId(v * NUM_RESOLUTIONS + r_index)
    }

    /// The canonical config an id stands for (inverse of [`SubnetConfig::id`]).
    pub fn from_id(id: SubnetId) -> Self {
        let mut v = id.0;
        let r = 128 + (v % NUM_RESOLUTIONS) as u16 * RESOLUTION_STEP;
        v /= NUM_RESOLUTIONS;
        let mut c = SubnetConfig::uniform(3, 3, 2, r);
        for b in (0..NUM_BLOCKS).rev() {
            c.e[b] = EXPAND_RATIOS[(v % 3) as usize];
            v /= 3;
            c.ks[b] = KERNEL_SIZES[(v % 3) as usize];
            v /= 3;
        }
        for u in (0..NUM_UNITS).rev() {
            c.d[u] = DEPTHS[(v % 3) as usize];
            v /= 3;
        }
        c
    }

    /// Parse OFA's JSON dict (`r` may be a number or a one-element list) and validate it.
    pub fn from_json(json: &[u8], net: &Supernet) -> Result<Self, ConfigParseError> {
        let cfg = parse_unvalidated(json)?;
        cfg.validate(net).map_err(ConfigParseError::Invalid)?;
        Ok(cfg)
    }

    /// Write OFA's JSON dict into `buf`, returning the bytes written.
    pub fn to_json(&self, buf: &mut [u8]) -> Result<usize, JsonError> {
        serde_json_core::to_slice(self, buf).map_err(JsonError::from)
    }
}

impl PartialEq for SubnetConfig {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.canonical(), other.canonical());
        a.ks == b.ks && a.e == b.e && a.d == b.d && a.r == b.r
    }
}
impl Eq for SubnetConfig {}

impl core::hash::Hash for SubnetConfig {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

/// Why a JSON sub-network config was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigParseError {
    /// The text is not the expected JSON.
    Json(JsonError),
    /// A list has the wrong number of entries.
    ListLength {
        /// The list's name.
        field: Field,
        /// The length required.
        expected: u8,
        /// The length found.
        found: usize,
    },
    /// The values are not a sub-network of this supernet.
    Invalid(ConfigError),
}

/// A list field of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Field {
    /// Kernel sizes.
    Ks,
    /// Expand ratios.
    E,
    /// Depths.
    D,
    /// Resolution given as a list.
    R,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Ks => "ks",
            Field::E => "e",
            Field::D => "d",
            Field::R => "r",
        })
    }
}

impl fmt::Display for ConfigParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "{e}"),
            Self::ListLength { field, expected, found } => {
                write!(f, "\"{field}\" has {found} entries, expected {expected}")
            }
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for ConfigParseError {}

impl From<ConfigError> for ConfigParseError {
    fn from(e: ConfigError) -> Self {
        ConfigParseError::Invalid(e)
    }
}

/// The config as it appears in JSON, before lengths are checked; `R` is the resolution's form.
#[derive(Deserialize)]
struct WireConfig<R> {
    ks: CountedList<u8, NUM_BLOCKS>,
    e: CountedList<u8, NUM_BLOCKS>,
    d: CountedList<u8, NUM_UNITS>,
    r: R,
}

impl<R> WireConfig<R> {
    /// Check list lengths and build the config with resolution `r` (values are validated separately).
    fn into_config(self, r: u16) -> Result<SubnetConfig, ConfigParseError> {
        Ok(SubnetConfig { ks: self.ks.exact(Field::Ks)?, e: self.e.exact(Field::E)?, d: self.d.exact(Field::D)?, r })
    }
}

/// Parse OFA's dict without validating values: `r` as a number, or else as a one-element list.
///
/// serde-json-core cannot look ahead at a value's type, so the list form is a second parse.
pub(crate) fn parse_unvalidated(json: &[u8]) -> Result<SubnetConfig, ConfigParseError> {
    let plain = serde_json_core::from_slice::<WireConfig<u16>>(json);
    match plain {
        Ok((wire, _)) => {
            let r = wire.r;
            wire.into_config(r)
        }
        Err(first) => match serde_json_core::from_slice::<WireConfig<CountedList<u16, 1>>>(json) {
            Ok((wire, _)) => {
                let [r] = wire.r.exact(Field::R)?;
                wire.into_config(r)
            }
            Err(_) => Err(ConfigParseError::Json(JsonError::from(first))),
        },
    }
}

impl Serialize for SubnetConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("SubnetConfig", 4)?;
        st.serialize_field("ks", &self.ks[..])?;
        st.serialize_field("e", &self.e[..])?;
        st.serialize_field("d", &self.d[..])?;
        st.serialize_field("r", &self.r)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W12: Supernet = Supernet::W1_2;

    #[test]
    fn validation_names_the_field_and_value() {
        let ok = SubnetConfig::uniform(5, 4, 3, 192);
        assert_eq!(ok.validate(&W12), Ok(()));
        let mut c = ok;
        c.ks[7] = 4;
        assert_eq!(c.validate(&W12), Err(ConfigError::KernelSize { block: 7, value: 4 }));
        let mut c = ok;
        c.e[19] = 5;
        assert_eq!(c.validate(&W12), Err(ConfigError::ExpandRatio { block: 19, value: 5 }));
        let mut c = ok;
        c.d[2] = 1;
        assert_eq!(c.validate(&W12), Err(ConfigError::Depth { unit: 2, value: 1 }));
        let c = SubnetConfig { r: 128, ..ok };
        assert_eq!(c.validate(&W12), Err(ConfigError::ResolutionRange { value: 128, min: 160, max: 224 }));
        assert_eq!(c.validate(&Supernet::W1_0), Ok(()));
        let c = SubnetConfig { r: 226, ..ok };
        assert_eq!(c.validate(&W12), Err(ConfigError::ResolutionRange { value: 226, min: 160, max: 224 }));
        let c = SubnetConfig { r: 198, ..ok };
        assert_eq!(c.validate(&W12), Err(ConfigError::ResolutionStep { value: 198, step: 4 }));
    }

    #[test]
    fn canonical_form_ignores_skipped_blocks() {
        let a = SubnetConfig::uniform(5, 4, 2, 192);
        let mut b = a;
        b.ks[2] = 7; // unit 1, third block: skipped at depth 2
        b.e[3] = 6;
        assert_eq!(a, b);
        assert_eq!(a.id(), b.id());
        let mut c = a;
        c.ks[1] = 7; // second block runs
        assert_ne!(a, c);
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn ids_are_stable_and_compact() {
        assert_eq!(SubnetConfig::uniform(3, 3, 2, 128).id(), SubnetId(0));
        let max = SubnetConfig::uniform(7, 6, 4, 224);
        let text = max.id().to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<SubnetId>(), Ok(max.id()));
        assert_eq!(SubnetConfig::from_id(max.id()), max);
        assert_eq!("not-an-id".parse::<SubnetId>(), Err(ParseIdError));
    }

    fn arb_config() -> impl Strategy<Value = SubnetConfig> {
        (
            proptest::array::uniform20(prop::sample::select(&KERNEL_SIZES[..])),
            proptest::array::uniform20(prop::sample::select(&EXPAND_RATIOS[..])),
            proptest::array::uniform5(prop::sample::select(&DEPTHS[..])),
            (0u16..=16).prop_map(|i| 160 + 4 * i),
        )
            .prop_map(|(ks, e, d, r)| SubnetConfig { ks, e, d, r })
    }

    proptest! {
        #[test]
        fn id_round_trips(c in arb_config()) {
            let back = SubnetConfig::from_id(c.id());
            prop_assert_eq!(back, c);
            prop_assert_eq!(back.id().to_string().parse::<SubnetId>(), Ok(c.id()));
        }

        #[test]
        fn json_round_trips(c in arb_config()) {
            let mut buf = [0u8; 256];
            let n = c.to_json(&mut buf).unwrap();
            prop_assert_eq!(SubnetConfig::from_json(&buf[..n], &W12), Ok(c));
        }
    }

    #[test]
    fn ofa_json_with_r_as_number_or_list() {
        let k = "[3,5,7,3,5,7,3,5,7,3,5,7,3,5,7,3,5,7,3,5]";
        let e = "[3,4,6,3,4,6,3,4,6,3,4,6,3,4,6,3,4,6,3,4]";
        let plain = format!(r#"{{"ks":{k},"e":{e},"d":[2,3,4,2,3],"r":176}}"#);
        let list = format!(r#"{{"ks": {k}, "e": {e}, "d": [2,3,4,2,3], "r": [176]}}"#);
        let a = SubnetConfig::from_json(plain.as_bytes(), &W12).unwrap();
        let b = SubnetConfig::from_json(list.as_bytes(), &W12).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.ks[1], a.e[2], a.d[4], a.r), (5, 6, 3, 176));

        let two = format!(r#"{{"ks":{k},"e":{e},"d":[2,3,4,2,3],"r":[176,180]}}"#);
        assert_eq!(
            SubnetConfig::from_json(two.as_bytes(), &W12),
            Err(ConfigParseError::ListLength { field: Field::R, expected: 1, found: 2 })
        );
        let short = format!(r#"{{"ks":[3,5],"e":{e},"d":[2,3,4,2,3],"r":176}}"#);
        assert_eq!(
            SubnetConfig::from_json(short.as_bytes(), &W12),
            Err(ConfigParseError::ListLength { field: Field::Ks, expected: 20, found: 2 })
        );
        let bad = format!(r#"{{"ks":{k},"e":{e},"d":[2,3,4,2,5],"r":176}}"#);
        assert_eq!(
            SubnetConfig::from_json(bad.as_bytes(), &W12),
            Err(ConfigParseError::Invalid(ConfigError::Depth { unit: 4, value: 5 }))
        );
        assert!(matches!(SubnetConfig::from_json(b"{\"ks\":", &W12), Err(ConfigParseError::Json(JsonError::Eof))));
        assert!(matches!(SubnetConfig::from_json(b"[1,2]", &W12), Err(ConfigParseError::Json(_))));
    }
}
