//! CPU DVFS through cpufreq: every policy of the CPU is pinned to the same operating point, with the
//! `userspace` governor and `scaling_setspeed` where the kernel offers them, else with
//! `scaling_min_freq`/`scaling_max_freq`.

use std::path::{Path, PathBuf};

use dynofa_core::hal::{ErrorType, FrequencyControl};
use dynofa_core::lut::Unit;

use super::clock::{Access, Pinning, Points};
use super::restore::{ClockOverride, Knob};
use super::{SysfsError, fs};

/// How the CPU clock is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPinMode {
    /// The `userspace` governor, then `scaling_setspeed` (exact, what a Jetson offers).
    Userspace,
    /// `scaling_min_freq` = `scaling_max_freq` under the current governor (kernels without `userspace`).
    Limits,
}

/// One cpufreq policy: a group of CPUs that share a clock.
#[derive(Debug, Clone)]
pub struct Policy {
    dir: PathBuf,
    cpus: String,
    driver: String,
}

impl Policy {
    /// The policy's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CPUs it clocks, as the kernel lists them (`0 1`).
    pub fn cpus(&self) -> &str {
        &self.cpus
    }

    /// The cpufreq driver (`tegra194`, `acpi-cpufreq`, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Its governor now.
    pub fn governor(&self) -> Result<String, SysfsError> {
        fs::read(&self.file("scaling_governor"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The CPU's clock: every cpufreq policy, pinned together.
///
/// The operating points are those every policy offers. Pinning saves the original governor or limits;
/// they come back on [`CpuFreq::restore`], on drop, and on SIGINT/SIGTERM/SIGHUP. When this process may
/// not write the files, [`FrequencyControl::operating_points`] is empty and [`CpuFreq::dvfs`] says why.
#[derive(Debug)]
pub struct CpuFreq {
    policies: Vec<Policy>,
    mode: CpuPinMode,
    pinning: Pinning,
}

/// The policy folders: `cpufreq/policy*`, or on kernels without them each `cpu*/cpufreq` once.
fn policy_dirs(root: &Path) -> Vec<PathBuf> {
    let cpu = root.join("sys/devices/system/cpu");
    let numbered = |prefix: &'static str| {
        move |n: &str| n.strip_prefix(prefix).is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let policies = fs::entries(&cpu.join("cpufreq"), numbered("policy"));
    if !policies.is_empty() {
        return policies;
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut seen = Vec::new();
    for dir in fs::entries(&cpu, numbered("cpu")).into_iter().map(|c| c.join("cpufreq")) {
        // cpuN/cpufreq of CPUs in one policy are links to the same folder.
        if let Ok(real) = dir.canonicalize()
            && !seen.contains(&real)
        {
            seen.push(real);
            dirs.push(dir);
        }
    }
    dirs
}

impl CpuFreq {
    /// Find the cpufreq policies under `<root>/sys/devices/system/cpu`.
    pub fn open(root: &Path) -> Result<Self, SysfsError> {
        let dirs = policy_dirs(root);
        if dirs.is_empty() {
            return Err(SysfsError::Missing {
                path: root.join("sys/devices/system/cpu/cpufreq"),
                what: "no cpufreq policy: this kernel has no cpufreq driver for the CPU (a VM or container?)",
            });
        }
        let mut common: Option<Vec<u64>> = None;
        let mut policies = Vec::with_capacity(dirs.len());
        let mut userspace = true;
        for dir in dirs {
            let read_opt = |name: &str| fs::read(&dir.join(name)).ok();
            let cpus = read_opt("related_cpus").or_else(|| read_opt("affected_cpus")).unwrap_or_default();
            let driver = read_opt("scaling_driver").unwrap_or_else(|| "unknown".into());
            let list = dir.join("scaling_available_frequencies");
            if !list.exists() {
                return Err(SysfsError::NoOperatingPoints { path: list, driver });
            }
            let khz = fs::read_list(&list, "frequencies in kHz")?;
            common = Some(match common {
                None => khz,
                Some(c) => c.into_iter().filter(|f| khz.contains(f)).collect(),
            });
            userspace &= read_opt("scaling_available_governors")
                .is_some_and(|g| g.split_whitespace().any(|g| g == "userspace"))
                && dir.join("scaling_setspeed").exists();
            policies.push(Policy { dir, cpus, driver });
        }
        let common = common.unwrap_or_default();
        if common.is_empty() {
            let first = &policies[0];
            return Err(SysfsError::NoOperatingPoints {
                path: first.file("scaling_available_frequencies"),
                driver: first.driver.clone(),
            });
        }
        let mode = if userspace { CpuPinMode::Userspace } else { CpuPinMode::Limits };
        let files: &[&str] = match mode {
            CpuPinMode::Userspace => &["scaling_governor", "scaling_setspeed"],
            CpuPinMode::Limits => &["scaling_min_freq", "scaling_max_freq"],
        };
        let paths: Vec<PathBuf> = policies.iter().flat_map(|p| files.iter().map(|f| p.file(f))).collect();
        let access = Access::probe(paths.iter().map(PathBuf::as_path));
        Ok(Self { policies, mode, pinning: Pinning::new(Unit::Cpu, Points::new(common, 1), access) })
    }

    /// The policies, in the kernel's order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// How pins are made.
    pub fn mode(&self) -> CpuPinMode {
        self.mode
    }

    /// The frequencies every policy offers, in kHz, whether or not this process may pin them.
    pub fn available_khz(&self) -> &[u32] {
        self.pinning.available_khz()
    }

    /// `Ok` when this process may pin the clock, else the error that says which file refused and why.
    pub fn dvfs(&self) -> Result<(), SysfsError> {
        self.pinning.dvfs()
    }

    /// The pinned point in kHz, if pinned.
    pub fn pinned_khz(&self) -> Option<u32> {
        self.pinning.pinned_khz()
    }

    /// What another tool (nvpmodel, jetson_clocks) changed since the last pin: a rewritten governor or
    /// limit, or a policy whose clock no longer reads back as the pinned point.
    pub fn overrides(&mut self) -> Result<Vec<ClockOverride>, SysfsError> {
        self.pinning.overrides(self.policies.iter().map(|p| p.file("scaling_cur_freq")))
    }

    /// Put the original governors or limits back (idempotent); returns the settings left alone because
    /// another tool changed them since.
    pub fn restore(&mut self) -> Result<Vec<ClockOverride>, SysfsError> {
        self.pinning.restore()
    }
}

impl ErrorType for CpuFreq {
    type Error = SysfsError;
}

impl FrequencyControl for CpuFreq {
    fn unit(&self) -> Unit {
        Unit::Cpu
    }

    fn operating_points(&self) -> &[u32] {
        self.pinning.operating_points()
    }

    /// The first policy's clock (all policies move together once pinned).
    fn current_khz(&mut self) -> Result<u32, SysfsError> {
        self.pinning.current_khz(&self.policies[0].file("scaling_cur_freq"))
    }

    fn set_khz(&mut self, khz: u32) -> Result<(), SysfsError> {
        let policies = &self.policies;
        let curs: Vec<PathBuf> = policies.iter().map(|p| p.file("scaling_cur_freq")).collect();
        match self.mode {
            CpuPinMode::Limits => {
                let limits: Vec<_> =
                    policies.iter().map(|p| (p.file("scaling_min_freq"), p.file("scaling_max_freq"))).collect();
                self.pinning.pin_limits(khz, &limits, &curs)
            }
            CpuPinMode::Userspace => {
                let knobs = || policies.iter().map(|p| Knob::File(p.file("scaling_governor"))).collect();
                self.pinning.pin(khz, knobs, &curs, |registry, id, value| {
                    for (i, p) in policies.iter().enumerate() {
                        if p.governor()? != "userspace" {
                            registry.set_file(id, i, "userspace")?;
                        }
                        // Not a saved knob: the kernel drops the set speed with the governor.
                        fs::write(&p.file("scaling_setspeed"), &value.to_string())?;
                    }
                    Ok(())
                })
            }
        }
    }
}
