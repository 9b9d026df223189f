//! Which board this is: the device-tree model and, on a Jetson, the L4T release.

use std::fmt;
use std::path::Path;

use super::fs;

/// A board family dynofa knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoardKind {
    /// Jetson Xavier NX (the paper's board).
    XavierNx,
    /// Jetson AGX Xavier.
    AgxXavier,
    /// Jetson Orin Nano.
    OrinNano,
    /// Jetson Orin NX.
    OrinNx,
    /// Jetson AGX Orin.
    AgxOrin,
    /// Another Jetson (Nano, TX2, ...).
    OtherJetson,
    /// Anything else running Linux.
    GenericLinux,
}

impl BoardKind {
    /// The family of a device-tree model string.
    pub fn from_model(model: &str) -> Self {
        let m = model.to_ascii_lowercase();
        let has = |s: &str| m.contains(s);
        if has("orin nano") {
            Self::OrinNano
        } else if has("orin nx") {
            Self::OrinNx
        } else if has("orin") {
            Self::AgxOrin
        } else if has("xavier nx") {
            Self::XavierNx
        } else if has("xavier") || has("jetson-agx") {
            Self::AgxXavier
        } else if has("jetson") {
            Self::OtherJetson
        } else {
            Self::GenericLinux
        }
    }

    /// Whether this is a Jetson.
    pub fn is_jetson(self) -> bool {
        self != Self::GenericLinux
    }
}

impl fmt::Display for BoardKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XavierNx => "Jetson Xavier NX",
            Self::AgxXavier => "Jetson AGX Xavier",
            Self::OrinNano => "Jetson Orin Nano",
            Self::OrinNx => "Jetson Orin NX",
            Self::AgxOrin => "Jetson AGX Orin",
            Self::OtherJetson => "Jetson",
            Self::GenericLinux => "generic Linux",
        })
    }
}

/// The L4T (Linux for Tegra) release from `/etc/nv_tegra_release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4t {
    /// The major release (`35` in R35.4.1).
    pub major: u32,
    /// The revision (`4.1` in R35.4.1).
    pub revision: String,
}

impl L4t {
    /// Parse the first line, `# R35 (release), REVISION: 4.1, ...`.
    pub fn parse(text: &str) -> Option<Self> {
        let line = text.lines().next()?;
        let major = line.trim_start_matches(['#', ' ']).strip_prefix('R')?.split(' ').next()?.parse().ok()?;
        let revision = line.split("REVISION:").nth(1)?.split(',').next()?.trim().to_owned();
        Some(Self { major, revision })
    }

    /// The JetPack major version of this L4T release (R32: 4, R35: 5, R36: 6).
    pub fn jetpack(&self) -> Option<u32> {
        match self.major {
            32 => Some(4),
            34 | 35 => Some(5),
            36 => Some(6),
            _ => None,
        }
    }
}

impl fmt::Display for L4t {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L4T R{}.{}", self.major, self.revision)?;
        match self.jetpack() {
            Some(jp) => write!(f, " (JetPack {jp})"),
            None => Ok(()),
        }
    }
}

/// The board this runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// The family.
    pub kind: BoardKind,
    /// `<root>/proc/device-tree/model`, where there is one.
    pub model: Option<String>,
    /// `<root>/etc/nv_tegra_release`, on a Jetson.
    pub l4t: Option<L4t>,
}

impl Board {
    /// Detect the board under `root`; a machine without a device tree is generic Linux.
    pub fn detect(root: &Path) -> Self {
        let model = fs::read(&root.join("proc/device-tree/model")).ok().filter(|m| !m.is_empty());
        let kind = model.as_deref().map_or(BoardKind::GenericLinux, BoardKind::from_model);
        let l4t = std::fs::read_to_string(root.join("etc/nv_tegra_release")).ok().and_then(|t| L4t::parse(&t));
        Self { kind, model, l4t }
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(model) = &self.model {
            write!(f, " ({model})")?;
        }
        if let Some(l4t) = &self.l4t {
            write!(f, ", {l4t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_strings_of_known_boards() {
        let cases = [
            ("NVIDIA Jetson Xavier NX Developer Kit", BoardKind::XavierNx),
            ("Jetson-AGX", BoardKind::AgxXavier),
            ("NVIDIA Jetson AGX Xavier Developer Kit", BoardKind::AgxXavier),
            ("NVIDIA Jetson Orin Nano Developer Kit", BoardKind::OrinNano),
            ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", BoardKind::OrinNano),
            ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", BoardKind::OrinNx),
            ("NVIDIA Jetson AGX Orin Developer Kit", BoardKind::AgxOrin),
            ("NVIDIA Jetson Nano Developer Kit", BoardKind::OtherJetson),
            ("Raspberry Pi 4 Model B Rev 1.4", BoardKind::GenericLinux),
        ];
        for (model, kind) in cases {
            assert_eq!(BoardKind::from_model(model), kind, "{model}");
        }
    }

    #[test]
    fn l4t_release_line() {
        let l4t =
            L4t::parse("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n").unwrap();
        assert_eq!((l4t.major, l4t.revision.as_str(), l4t.jetpack()), (35, "4.1", Some(5)));
        assert_eq!(l4t.to_string(), "L4T R35.4.1 (JetPack 5)");
        assert_eq!(L4t::parse("# R36 (release), REVISION: 4.3, GCID: 1").unwrap().jetpack(), Some(6));
        assert_eq!(L4t::parse("garbage"), None);
    }
}
