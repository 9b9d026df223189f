//! Fake sysfs/procfs trees of known machines, for tests of anything that drives DVFS without a board.
//!
//! Values follow the real boards' files. Plain files cannot react to writes the way the kernel does, so
//! the fakes stand in for it with links: a GPU's `cur_freq` links to its `max_freq` and a CPU's
//! `scaling_cur_freq` to `scaling_setspeed` (Jetson) or `scaling_max_freq` (x86), which is what the clock
//! reads once pinned. A fake `scaling_setspeed` holds a frequency even under other governors, where the
//! kernel would answer `<unsupported>`.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

/// A machine whose tree [`create`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeBoard {
    /// Jetson Xavier NX on JetPack 5 (L4T R35.4.1): `17000000.gv11b`, load in `/sys/devices/gpu.0`, three
    /// two-core Carmel policies, EMC readable.
    XavierNxJetPack5,
    /// Jetson Orin Nano on JetPack 6 (L4T R36.4.3): `17000000.gpu` under `platform/bus@0`, two policies, no
    /// readable EMC.
    OrinNanoJetPack6,
    /// An x86 PC with acpi-cpufreq, per-CPU `cpuN/cpufreq` folders, no `userspace` governor, no GPU.
    X86AcpiCpufreq,
    /// An x86 PC with intel_pstate, which lists no operating points.
    X86IntelPstate,
}

const XAVIER_NX_GPU_HZ: &str = "114750000 204000000 306000000 408000000 510000000 599250000 701250000 752250000 \
     803250000 854250000 905250000 956250000 1007250000 1058250000 1109250000";
const XAVIER_CPU_KHZ: &str = "115200 192000 268800 345600 422400 499200 576000 652800 729600 806400 883200 960000 \
     1036800 1113600 1190400 1267200 1344000 1420800 1497600 1574400 1651200 1728000 1804800 1881600 1907200";
const ORIN_NANO_GPU_HZ: &str = "306000000 408000000 510000000 612000000 624750000";
const ORIN_NANO_CPU_KHZ: &str = "115200 192000 268800 345600 422400 499200 576000 652800 729600 806400 883200 \
     960000 1036800 1113600 1190400 1267200 1344000 1420800 1497600 1510400";
const JETSON_GOVERNORS: &str = "conservative ondemand userspace powersave performance schedutil";
const PROC_STAT: &str = "cpu  4705 356 584 3699176 23 23 0 0 0 0\ncpu0 1393 280 255 616595 7 10 0 0 0 0\n";

fn file(root: &Path, rel: &str, content: &str) -> io::Result<()> {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("a relative file path has a parent"))?;
    fs::write(path, content)
}

fn link(root: &Path, rel: &str, target: &str) -> io::Result<()> {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("a relative link path has a parent"))?;
    symlink(target, path)
}

/// A GPU devfreq node in `device` (relative to `sys/devices`), linked from the devfreq class.
fn gpu(root: &Path, device: &str, name: &str, hz: &str) -> io::Result<()> {
    let node = format!("sys/devices/{device}/devfreq/{name}");
    let (min, max) = (hz.split(' ').next().unwrap_or_default(), hz.rsplit(' ').next().unwrap_or_default());
    file(root, &format!("{node}/available_frequencies"), &format!("{hz}\n"))?;
    file(root, &format!("{node}/min_freq"), &format!("{min}\n"))?;
    file(root, &format!("{node}/max_freq"), &format!("{max}\n"))?;
    link(root, &format!("{node}/cur_freq"), "max_freq")?;
    file(root, &format!("{node}/governor"), "nvhost_podgov\n")?;
    file(
        root,
        &format!("{node}/available_governors"),
        "wmark_active nvhost_podgov userspace performance simple_ondemand\n",
    )?;
    link(root, &format!("{node}/device"), "../..")?;
    link(root, &format!("sys/class/devfreq/{name}"), &format!("../../devices/{device}/devfreq/{name}"))
}

/// One cpufreq policy folder at `rel`.
fn policy(root: &Path, rel: &str, cpus: &str, driver: &str, khz: Option<&str>, governors: &str) -> io::Result<()> {
    let f = |name: &str, content: &str| file(root, &format!("{rel}/{name}"), &format!("{content}\n"));
    f("related_cpus", cpus)?;
    f("affected_cpus", cpus)?;
    f("scaling_driver", driver)?;
    f("scaling_available_governors", governors)?;
    f("scaling_governor", if governors.contains("schedutil") { "schedutil" } else { "powersave" })?;
    let list: Vec<&str> = khz.map(|k| k.split(' ').collect()).unwrap_or_else(|| vec!["800000", "4200000"]);
    let (lo, hi) = (
        list.iter().min_by_key(|v| v.parse::<u64>().unwrap_or(0)),
        list.iter().max_by_key(|v| v.parse::<u64>().unwrap_or(0)),
    );
    let (lo, hi) = (lo.copied().unwrap_or_default(), hi.copied().unwrap_or_default());
    f("scaling_min_freq", lo)?;
    f("scaling_max_freq", hi)?;
    f("cpuinfo_min_freq", lo)?;
    f("cpuinfo_max_freq", hi)?;
    if let Some(khz) = khz {
        f("scaling_available_frequencies", khz)?;
    }
    if governors.contains("userspace") {
        f("scaling_setspeed", hi)?;
        link(root, &format!("{rel}/scaling_cur_freq"), "scaling_setspeed")
    } else {
        link(root, &format!("{rel}/scaling_cur_freq"), "scaling_max_freq")
    }
}

/// Jetson policies `policyN` for the CPU groups in `groups`, with `cpuN/cpufreq` links as the kernel makes.
fn jetson_cpus(root: &Path, groups: &[&[u32]], khz: &str) -> io::Result<()> {
    for group in groups {
        let cpus: Vec<String> = group.iter().map(u32::to_string).collect();
        let rel = format!("sys/devices/system/cpu/cpufreq/policy{}", group[0]);
        policy(root, &rel, &cpus.join(" "), "tegra194", Some(khz), JETSON_GOVERNORS)?;
        for cpu in *group {
            link(root, &format!("sys/devices/system/cpu/cpu{cpu}/cpufreq"), &format!("../cpufreq/policy{}", group[0]))?;
        }
    }
    Ok(())
}

/// The GPU devfreq node's `min_freq` and `max_freq` in a tree [`create`] wrote: what a pin changes
/// and a restore puts back.
pub fn gpu_limits(root: &Path) -> io::Result<(String, String)> {
    for entry in fs::read_dir(root.join("sys/class/devfreq"))? {
        let dir = entry?.path();
        if dir.file_name().and_then(|n| n.to_str()).is_some_and(super::devfreq::is_gpu_node) {
            let read = |f: &str| fs::read_to_string(dir.join(f)).map(|s| s.trim().to_owned());
            return Ok((read("min_freq")?, read("max_freq")?));
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "no GPU devfreq node"))
}

/// Write the tree of `board` under `root` (an empty folder).
pub fn create(board: FakeBoard, root: &Path) -> io::Result<()> {
    file(root, "proc/stat", PROC_STAT)?;
    match board {
        FakeBoard::XavierNxJetPack5 => {
            file(root, "proc/device-tree/model", "NVIDIA Jetson Xavier NX Developer Kit\0")?;
            file(
                root,
                "etc/nv_tegra_release",
                "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n",
            )?;
            gpu(root, "17000000.gv11b", "17000000.gv11b", XAVIER_NX_GPU_HZ)?;
            file(root, "sys/devices/gpu.0/load", "137\n")?;
            file(root, "sys/class/devfreq/15340000.vic/available_frequencies", "115200000 1036800000\n")?;
            jetson_cpus(root, &[&[0, 1], &[2, 3], &[4, 5]], XAVIER_CPU_KHZ)?;
            file(root, "sys/kernel/debug/bpmp/debug/clk/emc/rate", "1600000000\n")?;
            file(root, "sys/kernel/actmon_avg_activity/mc_all", "400000\n")
        }
        FakeBoard::OrinNanoJetPack6 => {
            file(root, "proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit\0")?;
            file(
                root,
                "etc/nv_tegra_release",
                "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n",
            )?;
            gpu(root, "platform/bus@0/17000000.gpu", "17000000.gpu", ORIN_NANO_GPU_HZ)?;
            file(root, "sys/devices/platform/bus@0/17000000.gpu/load", "250\n")?;
            jetson_cpus(root, &[&[0, 1, 2, 3], &[4, 5]], ORIN_NANO_CPU_KHZ)
        }
        FakeBoard::X86AcpiCpufreq => {
            for cpu in 0..4 {
                let rel = format!("sys/devices/system/cpu/cpu{cpu}/cpufreq");
                let khz = "3401000 3400000 2800000 2200000 1600000 800000";
                policy(
                    root,
                    &rel,
                    &cpu.to_string(),
                    "acpi-cpufreq",
                    Some(khz),
                    "conservative ondemand powersave performance schedutil",
                )?;
            }
            Ok(())
        }
        FakeBoard::X86IntelPstate => {
            for cpu in 0..4 {
                let rel = format!("sys/devices/system/cpu/cpufreq/policy{cpu}");
                policy(root, &rel, &cpu.to_string(), "intel_pstate", None, "performance powersave")?;
            }
            Ok(())
        }
    }
}
