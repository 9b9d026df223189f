//! Everything the Linux platform found under a root: the board, each unit's clock control and load
//! sensor, the EMC; each part either usable or the reason it is not.

use std::fmt::Write as _;
use std::path::PathBuf;

use dynofa_core::hal::{FrequencyControl, LoadSensor};

use super::{Board, CpuFreq, CpuLoad, CpuPinMode, Emc, GpuDevfreq, GpuLoad, SysfsError};

/// What [`Platform::probe`] found. A part that is missing or not permitted is an `Err` saying which file,
/// what failed and what to do; the others work regardless, so a container without DVFS still runs.
#[derive(Debug)]
pub struct Platform {
    /// The root every path was looked up under (`/` on a board).
    pub root: PathBuf,
    /// The board.
    pub board: Board,
    /// GPU clock control (devfreq). Found but not writable shows in [`GpuDevfreq::dvfs`].
    pub gpu: Result<GpuDevfreq, SysfsError>,
    /// CPU clock control (cpufreq). Found but not writable shows in [`CpuFreq::dvfs`].
    pub cpu: Result<CpuFreq, SysfsError>,
    /// GPU load.
    pub gpu_load: Result<GpuLoad, SysfsError>,
    /// CPU utilisation.
    pub cpu_load: Result<CpuLoad, SysfsError>,
    /// EMC clock and activity (debugfs; usually root only).
    pub emc: Result<Emc, SysfsError>,
}

impl Platform {
    /// Look at the machine under `root` (a fake tree in tests, `/` on a board). Never fails as a whole.
    pub fn probe(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let gpu = GpuDevfreq::open(&root);
        let gpu_load = GpuLoad::open(&root, gpu.as_ref().ok().map(GpuDevfreq::dir));
        Self {
            board: Board::detect(&root),
            cpu: CpuFreq::open(&root),
            cpu_load: CpuLoad::open(&root),
            emc: Emc::open(&root),
            gpu,
            gpu_load,
            root,
        }
    }

    /// This machine (root `/`).
    pub fn host() -> Self {
        Self::probe("/")
    }

    /// Whether both units' clocks can be pinned.
    pub fn dvfs_ready(&self) -> bool {
        self.gpu.as_ref().is_ok_and(|g| g.dvfs().is_ok()) && self.cpu.as_ref().is_ok_and(|c| c.dvfs().is_ok())
    }

    /// A human-readable account of everything found, with current clocks and loads (the CPU load covers
    /// the time since the probe or the previous report).
    pub fn report(&mut self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("root:     {}", self.root.display()));
        line(format!("board:    {}", self.board));
        match &mut self.gpu {
            Ok(gpu) => {
                let governor = gpu.governor().unwrap_or_else(|_| "unknown".into());
                let now = reading(gpu.current_khz().map(|k| format!("{k} kHz")));
                line(format!(
                    "gpu:      devfreq {} (governor {governor}), {}, now {now}",
                    gpu.name(),
                    points(gpu.available_khz()),
                ));
                line(format!("gpu dvfs: {}", status(gpu.dvfs())));
            }
            Err(e) => line(format!("gpu:      unavailable: {e}")),
        }
        match &mut self.cpu {
            Ok(cpu) => {
                let groups: Vec<String> = cpu.policies().iter().map(|p| format!("[{}]", p.cpus())).collect();
                let how = match cpu.mode() {
                    CpuPinMode::Userspace => "userspace governor + scaling_setspeed",
                    CpuPinMode::Limits => "scaling_min_freq/scaling_max_freq",
                };
                let now = reading(cpu.current_khz().map(|k| format!("{k} kHz")));
                line(format!(
                    "cpu:      cpufreq {} ({} policies: cpus {}), {}, pinned by {how}, now {now}",
                    cpu.policies()[0].driver(),
                    groups.len(),
                    groups.join(" "),
                    points(cpu.available_khz()),
                ));
                line(format!("cpu dvfs: {}", status(cpu.dvfs())));
            }
            Err(e) => line(format!("cpu:      unavailable: {e}")),
        }
        line(match &mut self.gpu_load {
            Ok(s) => format!("gpu load: {} ({})", reading(s.load_permille().map(permille)), s.path().display()),
            Err(e) => format!("gpu load: unavailable: {e}"),
        });
        line(match &mut self.cpu_load {
            Ok(s) => format!("cpu load: {}", reading(s.load_permille().map(permille))),
            Err(e) => format!("cpu load: unavailable: {e}"),
        });
        line(match &self.emc {
            Ok(emc) => format!(
                "emc:      {} ({})",
                reading(emc.read().map(|r| match r.load_permille {
                    Some(l) => format!("{} kHz, {} busy", r.rate_khz, permille(l)),
                    None => format!("{} kHz", r.rate_khz),
                })),
                emc.rate_path().display()
            ),
            Err(e) => format!("emc:      not reported: {e}"),
        });
        out
    }
}

fn points(khz: &[u32]) -> String {
    let mut s = format!("{} operating points", khz.len());
    if let (Some(lo), Some(hi)) = (khz.first(), khz.last()) {
        let _ = write!(s, " {lo}..{hi} kHz");
    }
    s
}

fn permille(p: u16) -> String {
    format!("{}.{}%", p / 10, p % 10)
}

fn reading(r: Result<String, SysfsError>) -> String {
    r.unwrap_or_else(|e| format!("unreadable ({e})"))
}

fn status(r: Result<(), SysfsError>) -> String {
    match r {
        Ok(()) => "ready (this process may pin the clock)".into(),
        Err(e) => format!("unavailable: {e}"),
    }
}
