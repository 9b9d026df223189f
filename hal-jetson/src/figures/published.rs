//! Published points of other networks (`data/published-points.csv`): ImageNet top-1, MACs and a
//! latency on a named device, each with its source.
//!
//! Columns: `network,family,kind,top1_pct,macs_m,latency_ms,device_key,latency_device,config,source`.
//! Lines starting with `#` are comments. `macs_m`, `latency_ms` and `config` may be empty; a latency
//! needs a `device_key` (a figure draws a point only on the axis of its device). `config` is a
//! sub-network id of the w1.2 supernet. `source` is last and may hold commas.

use std::path::Path;

use dynofa_core::{SubnetConfig, SubnetId, Supernet};

use super::FigureError;

/// The columns, in order.
pub const COLUMNS: &str = "network,family,kind,top1_pct,macs_m,latency_ms,device_key,latency_device,config,source";

/// Whether a network can change its size at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One fixed architecture.
    Static,
    /// Switchable at run time.
    Dynamic,
}

/// One published network.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Its name.
    pub network: String,
    /// Its family (one legend entry per family).
    pub family: String,
    /// Static or dynamic.
    pub kind: Kind,
    /// ImageNet top-1 in percent.
    pub top1_pct: f64,
    /// Multiply-accumulates per image, in millions.
    pub macs_m: Option<f64>,
    /// Latency in ms on `device_key`.
    pub latency_ms: Option<f64>,
    /// The device the latency was measured on, as a key that figures match their axis against.
    pub device_key: String,
    /// That device in words.
    pub latency_device: String,
    /// The sub-network, for points from the OFA w1.2 supernet.
    pub config: Option<SubnetConfig>,
    /// Where the numbers come from.
    pub source: String,
}

/// Read the published points.
pub fn load(path: &Path) -> Result<Vec<Point>, FigureError> {
    let text = std::fs::read_to_string(path).map_err(|source| FigureError::Io { path: path.into(), source })?;
    parse(&text, path)
}

/// Parse the text of a published-points file (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Point>, FigureError> {
    let mut points = Vec::new();
    let mut header_seen = false;
    for (i, line) in text.lines().enumerate() {
        let fail = |reason: String| FigureError::Published { path: path.into(), line: i + 1, reason };
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !header_seen {
            if line != COLUMNS {
                return Err(fail(format!("expected the header line \"{COLUMNS}\"")));
            }
            header_seen = true;
            continue;
        }
        points.push(parse_line(line).map_err(fail)?);
    }
    if points.is_empty() {
        return Err(FigureError::Published { path: path.into(), line: 0, reason: "no points".into() });
    }
    Ok(points)
}

fn parse_line(line: &str) -> Result<Point, String> {
    let f: Vec<&str> = line.splitn(10, ',').map(str::trim).collect();
    if f.len() != 10 {
        return Err(format!("{} fields where {COLUMNS} needs 10", f.len()));
    }
    let number = |name: &str, v: &str| -> Result<Option<f64>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
            _ => Err(format!("{name} \"{v}\" is not a positive number")),
        }
    };
    let kind = match f[2] {
        "static" => Kind::Static,
        "dynamic" => Kind::Dynamic,
        other => return Err(format!("kind \"{other}\" is neither static nor dynamic")),
    };
    let top1_pct = number("top1_pct", f[3])?.filter(|t| *t < 100.0).ok_or("top1_pct must be a percentage")?;
    let latency_ms = number("latency_ms", f[5])?;
    if latency_ms.is_some() && (f[6].is_empty() || f[7].is_empty()) {
        return Err("a latency needs device_key and latency_device".into());
    }
    let config = if f[8].is_empty() {
        None
    } else {
        let id: SubnetId = f[8].parse().map_err(|e| format!("config \"{}\": {e}", f[8]))?;
        let c = SubnetConfig::from_id(id);
        c.validate(&Supernet::W1_2).map_err(|e| format!("config \"{}\": {e}", f[8]))?;
        Some(c)
    };
    if f[0].is_empty() || f[1].is_empty() || f[9].is_empty() {
        return Err("network, family and source must not be empty".into());
    }
    Ok(Point {
        network: f[0].into(),
        family: f[1].into(),
        kind,
        top1_pct,
        macs_m: number("macs_m", f[4])?,
        latency_ms,
        device_key: f[6].into(),
        latency_device: f[7].into(),
        config,
        source: f[9].into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::workspace_path;

    fn parse_str(text: &str) -> Result<Vec<Point>, FigureError> {
        parse(text, Path::new("points.csv"))
    }

    #[test]
    fn the_committed_points_parse_and_their_macs_match_the_supernet() {
        let points = load(&workspace_path("data/published-points.csv")).unwrap();
        for family in ["MobileNetV3", "AutoSlim-MNasNet", "OFA specialised", "Dynamic-OFA"] {
            assert!(points.iter().any(|p| p.family == family), "no {family} points");
        }
        // Points of the supernet carry the MACs dynofa counts for their config (OFA's count).
        let mut with_config = 0;
        for p in points.iter().filter(|p| p.config.is_some()) {
            let macs = Supernet::W1_2.cost(&p.config.unwrap()).macs as f64 / 1e6;
            assert!((macs - p.macs_m.unwrap()).abs() < 0.01, "{}: {macs} vs {:?}", p.network, p.macs_m);
            with_config += 1;
        }
        assert_eq!(with_config, 13);
    }

    #[test]
    fn bad_lines_name_the_line_and_the_fix() {
        let header = format!("# comment\n{COLUMNS}\n");
        let ok = "MobileNetV3-Large 1.0,MobileNetV3,static,75.2,217,51.2,pixel1-cpu,Google Pixel 1,,a, b";
        let points = parse_str(&format!("{header}{ok}\n")).unwrap();
        assert_eq!((points[0].source.as_str(), points[0].latency_ms), ("a, b", Some(51.2)));
        let cases = [
            ("x,f,static,75.2,217,,,,,s", None),
            ("x,f,semi,75.2,217,,,,,s", Some("kind")),
            ("x,f,static,175,217,,,,,s", Some("percentage")),
            ("x,f,static,75,-3,,,,,s", Some("macs_m")),
            ("x,f,static,75,3,20,,,,s", Some("device_key")),
            ("x,f,static,75,3,,,,zz,s", Some("config")),
            ("x,f,static,75,3,,,,,", Some("source")),
            ("x,f,static", Some("10")),
        ];
        for (line, want) in cases {
            let r = parse_str(&format!("{header}{line}\n"));
            match want {
                None => assert!(r.is_ok(), "{line}: {r:?}"),
                Some(w) => {
                    let e = r.unwrap_err().to_string();
                    assert!(e.starts_with("points.csv:3: ") && e.contains(w), "{line}: {e}");
                }
            }
        }
        assert!(parse_str("a,b\n").unwrap_err().to_string().contains("header"));
    }
}
