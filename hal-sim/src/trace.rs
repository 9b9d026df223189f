//! A run's frames as CSV, one row per frame: the columns every trace has (simulated or real, so one
//! reader serves both), then any columns the caller adds.

use std::io::{self, Write};

use crate::sim::Run;

/// The columns every trace starts with.
pub const COLUMNS: &str = "model,name,t_ms,latency_ms,target_ms,met,counted,entry,top1,clock_mhz,share";

/// Columns a caller adds after [`COLUMNS`].
#[derive(Clone, Copy)]
pub struct Extra<'a> {
    /// Their header, comma-separated.
    pub header: &'a str,
    /// Their values for frame `i` of the run, comma-separated.
    pub values: &'a dyn Fn(usize) -> String,
}

impl std::fmt::Debug for Extra<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extra").field("header", &self.header).finish_non_exhaustive()
    }
}

/// Write `run`'s frames as CSV to `out`.
pub fn write_csv(run: &Run, extra: Option<Extra<'_>>, out: &mut impl Write) -> io::Result<()> {
    match extra {
        Some(x) => writeln!(out, "{COLUMNS},{}", x.header)?,
        None => writeln!(out, "{COLUMNS}")?,
    }
    for (i, f) in run.frames.iter().enumerate() {
        let name = &run.scenario.models[f.model].name;
        write!(
            out,
            "{},{name},{:.3},{:.3},{},{},{},{},{},{},{}",
            f.model,
            f.t_ms,
            f.latency_ms,
            f.target_ms,
            u8::from(f.met()),
            u8::from(f.counted),
            f.entry,
            f.top1,
            f.clock_mhz,
            f.share
        )?;
        match extra {
            Some(x) => writeln!(out, ",{}", (x.values)(i))?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{PolicyKind, simulate};
    use crate::{Scenario, dynamic_ofa_lut_path, load_lut};

    #[test]
    fn rows_follow_the_header_with_extra_columns() {
        let mut scenario = Scenario::load("fig7").unwrap();
        scenario.duration_s = 1.0;
        let run = simulate(&scenario, PolicyKind::Dynofa, &load_lut(&dynamic_ofa_lut_path()).unwrap()).unwrap();
        let mut plain = Vec::new();
        write_csv(&run, None, &mut plain).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!((lines[0], lines.len()), (COLUMNS, run.frames.len() + 1));
        assert!(lines[1].starts_with("0,classifier,0.000,"), "{}", lines[1]);
        let mut more = Vec::new();
        write_csv(&run, Some(Extra { header: "frame", values: &|i| i.to_string() }), &mut more).unwrap();
        let more = String::from_utf8(more).unwrap();
        assert!(more.starts_with(&format!("{COLUMNS},frame\n{},0\n", lines[1])), "{more}");
    }
}
