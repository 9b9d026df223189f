//! Small pieces that let serde-json-core parse our files without allocating and still report
//! precise errors (serde-json-core folds length and capacity problems into one custom error).

use core::fmt;
use core::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigParseError, Field};

/// A JSON syntax, type or buffer problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum JsonError {
    /// The input ended early.
    Eof,
    /// The text is not valid JSON where a value was expected.
    Syntax,
    /// A value has the wrong type (e.g. a string where a number belongs) or is out of range.
    Type,
    /// Text follows the JSON value.
    TrailingCharacters,
    /// The output buffer is too small.
    BufferFull,
    /// A required field is missing, repeated, or a value is refused for another reason.
    Other,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eof => "json ended early",
            Self::Syntax => "json syntax error",
            Self::Type => "json value has the wrong type or is out of range",
            Self::TrailingCharacters => "json has trailing characters after the value",
            Self::BufferFull => "output buffer is too small for the json",
            Self::Other => "json object lacks a required field, repeats one, or holds a refused value",
        })
    }
}

impl core::error::Error for JsonError {}

impl From<serde_json_core::de::Error> for JsonError {
    fn from(e: serde_json_core::de::Error) -> Self {
        use serde_json_core::de::Error as E;
        match e {
            E::EofWhileParsingList
            | E::EofWhileParsingObject
            | E::EofWhileParsingString
            | E::EofWhileParsingNumber
            | E::EofWhileParsingValue => Self::Eof,
            E::ExpectedColon
            | E::ExpectedListCommaOrEnd
            | E::ExpectedObjectCommaOrEnd
            | E::ExpectedSomeIdent
            | E::ExpectedSomeValue
            | E::InvalidUnicodeCodePoint
            | E::InvalidEscapeSequence
            | E::KeyMustBeAString
            | E::TrailingComma => Self::Syntax,
            E::InvalidNumber | E::InvalidType => Self::Type,
            E::TrailingCharacters => Self::TrailingCharacters,
            _ => Self::Other,
        }
    }
}

impl From<serde_json_core::ser::Error> for JsonError {
    fn from(_: serde_json_core::ser::Error) -> Self {
        Self::BufferFull
    }
}

/// A JSON list that keeps its first `N` items and counts them all, so that a wrong length or an
/// over-full table becomes a typed error instead of serde-json-core's anonymous custom error.
#[derive(Debug, Clone)]
pub(crate) struct CountedList<T, const N: usize> {
    pub(crate) items: heapless::Vec<T, N>,
    pub(crate) found: usize,
}

impl<T: Copy + Default, const N: usize> CountedList<T, N> {
    /// The items as an array when there are exactly `N` of them.
    pub(crate) fn exact(&self, field: Field) -> Result<[T; N], ConfigParseError> {
        if self.found != N {
            return Err(ConfigParseError::ListLength { field, expected: N as u8, found: self.found });
        }
        let mut out = [T::default(); N];
        out.copy_from_slice(&self.items);
        Ok(out)
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for CountedList<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = CountedList<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = heapless::Vec::new();
                let mut found = 0;
                while found < N {
                    match seq.next_element::<T>()? {
                        Some(item) => {
                            // Cannot fail: fewer than N items are held.
                            let _ = items.push(item);
                            found += 1;
                        }
                        None => return Ok(CountedList { items, found }),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    found += 1;
                }
                Ok(CountedList { items, found })
            }
        }
        d.deserialize_seq(V::<T, N>(PhantomData))
    }
}

impl<T: Serialize, const N: usize> Serialize for CountedList<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for item in &self.items {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}
