//! `cargo xtask build-jetson [--jetpack 5|6]`: a release build of `dynofa` for a Jetson, linked against
//! the board's glibc, checked, and smoke-run under qemu.
//!
//! A binary linked on this host (Debian 12, glibc 2.36) needs GLIBC_2.34 and does not start on JetPack 5
//! (Ubuntu 20.04, glibc 2.31). cargo-zigbuild links against an older glibc when the target names it
//! (`aarch64-unknown-linux-gnu.2.31`); the result's `.gnu.version_r` then says the newest glibc symbol it
//! needs, which this task checks against the JetPack's glibc.
//!
//! CUDA: the cudarc feature follows the JetPack (5: CUDA 11.4, `cuda-11040`; 6: CUDA 12.6, `cuda-12060`,
//! or `--cuda-feature cuda-12020` for JetPack 6.0's CUDA 12.2). It is passed as
//! `--no-default-features --features dynofa-hal-jetson/<name>` (the default feature is `cuda-12060`)
//! and must be one that `dynofa-hal-jetson` declares.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use object::read::elf::{ElfFile64, FileHeader};
use object::{Endianness, elf};

use crate::util::{cargo, run as sh};

/// The Rust target of every Jetson since Xavier.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Where qemu finds the aarch64 loader and libraries (Debian's libc6-arm64-cross).
const QEMU_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// A JetPack major release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JetPack {
    /// JetPack 5 (L4T R35, Ubuntu 20.04, glibc 2.31, CUDA 11.4).
    #[value(name = "5")]
    Five,
    /// JetPack 6 (L4T R36, Ubuntu 22.04, glibc 2.35, CUDA 12.2/12.6).
    #[value(name = "6")]
    Six,
}

impl JetPack {
    /// The board's glibc: the newest symbol version a binary may need.
    pub fn glibc(self) -> GlibcVersion {
        match self {
            Self::Five => GlibcVersion(2, 31, 0),
            Self::Six => GlibcVersion(2, 35, 0),
        }
    }

    /// The cudarc feature of the JetPack's CUDA.
    fn cuda_feature(self) -> &'static str {
        match self {
            Self::Five => "cuda-11040",
            Self::Six => "cuda-12060",
        }
    }

    /// The major version as a number.
    pub fn number(self) -> u8 {
        match self {
            Self::Five => 5,
            Self::Six => 6,
        }
    }
}

/// Options of `build-jetson`.
#[derive(clap::Args)]
pub struct Args {
    /// JetPack major version on the board (`cat /etc/nv_tegra_release`: R35 is 5, R36 is 6).
    #[arg(long, value_enum, default_value = "5")]
    pub jetpack: JetPack,
    /// The cudarc CUDA-version feature, if not the JetPack's default (cuda-11040 for 5, cuda-12060 for 6).
    #[arg(long)]
    pub cuda_feature: Option<String>,
    /// Skip running the built binary's --help under qemu-aarch64.
    #[arg(long)]
    pub no_qemu: bool,
}

/// A glibc symbol version (`GLIBC_2.31` is 2.31.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub u32, pub u32, pub u32);

impl GlibcVersion {
    /// Parse a version-needed name such as `GLIBC_2.2.5`; other names (`GLIBC_PRIVATE`, `GCC_3.0`) are not one.
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.strip_prefix("GLIBC_")?.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        parts.next().is_none().then_some(Self(major, minor, patch))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GLIBC_{}.{}", self.0, self.1)?;
        if self.2 > 0 {
            write!(f, ".{}", self.2)?;
        }
        Ok(())
    }
}

/// What the ELF check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfFacts {
    /// `e_machine`.
    pub machine: elf::Machine,
    /// The newest glibc symbol version needed, `None` for a static binary.
    pub newest_glibc: Option<GlibcVersion>,
}

/// Read the machine and the newest needed glibc version from a 64-bit ELF file's `.gnu.version_r`.
pub fn elf_facts(data: &[u8]) -> Result<ElfFacts> {
    let file = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF file")?;
    let endian = file.endian();
    let machine = file.elf_header().e_machine(endian);
    let sections = file.elf_section_table();
    let mut newest_glibc = None;
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data).context("reading .gnu.version_r")? {
        let strings = sections.strings(endian, data, link).context("reading the version names")?;
        while let Some((_, mut versions)) = needs.next().context("reading .gnu.version_r")? {
            while let Some(version) = versions.next().context("reading .gnu.version_r")? {
                let name = version.name(endian, strings).context("reading a version name")?;
                let parsed = std::str::from_utf8(name).ok().and_then(GlibcVersion::parse);
                newest_glibc = newest_glibc.max(parsed);
            }
        }
    }
    Ok(ElfFacts { machine, newest_glibc })
}

impl ElfFacts {
    /// `Ok` when this is an aarch64 binary that runs on `jetpack`'s glibc; `path` names it in the error.
    pub fn verify(&self, path: &Path, jetpack: JetPack) -> Result<()> {
        if self.machine != elf::EM_AARCH64 {
            bail!(
                "{} is not an aarch64 binary (ELF machine {}); build it with `cargo xtask build-jetson`",
                path.display(),
                self.machine.0
            );
        }
        let ceiling = jetpack.glibc();
        match self.newest_glibc {
            Some(v) if v > ceiling => bail!(
                "{} needs {v} but JetPack {} has glibc {}.{}: it would not start there; build it with `cargo xtask build-jetson --jetpack {}`",
                path.display(),
                jetpack.number(),
                ceiling.0,
                ceiling.1,
                jetpack.number()
            ),
            _ => Ok(()),
        }
    }
}

/// Check that `path` is an aarch64 binary that runs on `jetpack`'s glibc, and say what was found.
pub fn check_binary(path: &Path, jetpack: JetPack) -> Result<ElfFacts> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let facts = elf_facts(&data).with_context(|| format!("{} is not a binary this can check", path.display()))?;
    facts.verify(path, jetpack)?;
    Ok(facts)
}

/// Where `build-jetson` leaves the binary for `jetpack` (and where `flash` takes it from).
pub fn output_path(target_dir: &Path, jetpack: JetPack) -> PathBuf {
    target_dir.join("jetson").join(format!("jetpack{}", jetpack.number())).join("dynofa")
}

/// The workspace's target folder and the features `dynofa-hal-jetson` declares, from `cargo metadata`.
pub fn metadata() -> Result<(PathBuf, Vec<String>)> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("could not run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed with {}", out.status);
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let target_dir = meta["target_directory"].as_str().context("cargo metadata names no target_directory")?;
    let features = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "dynofa-hal-jetson")
        .and_then(|p| p["features"].as_object())
        .map(|f| f.keys().cloned().collect())
        .unwrap_or_default();
    Ok((PathBuf::from(target_dir), features))
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Install cargo-zigbuild and zig when missing (both from their registries: crates.io and PyPI).
pub fn ensure_tools() -> Result<()> {
    // `cargo zigbuild --version` is refused (exit 2) even when it is installed.
    if !succeeds(Command::new("cargo-zigbuild").arg("--version")) {
        eprintln!(
            "cargo-zigbuild is missing: installing it with `cargo install --locked cargo-zigbuild` (once, a few minutes)"
        );
        sh(cargo().args(["install", "--locked", "cargo-zigbuild"])).context("could not install cargo-zigbuild")?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    // cargo-zigbuild uses `zig` on PATH, else the `ziglang` Python package.
    if !succeeds(Command::new("zig").arg("version"))
        && !succeeds(Command::new(&python).args(["-m", "ziglang", "version"]))
    {
        eprintln!("zig is missing: installing the `ziglang` package from PyPI with `{python} -m pip install ziglang`");
        sh(Command::new(&python).args(["-m", "pip", "install", "ziglang"]))
            .context("could not install zig; install it yourself (`pip install --user ziglang`, or zig on PATH)")?;
    }
    if succeeds(Command::new("rustup").arg("--version")) {
        sh(Command::new("rustup").args(["target", "add", TARGET]))?;
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    ensure_tools()?;
    let (target_dir, features) = metadata()?;
    let glibc = args.jetpack.glibc();
    let mut build = cargo();
    build.args(["zigbuild", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa", "--target"]);
    build.arg(format!("{TARGET}.{}.{}", glibc.0, glibc.1));
    let cuda = args.cuda_feature.as_deref().unwrap_or(args.jetpack.cuda_feature());
    if features.iter().any(|f| f == cuda) {
        // cudarc takes exactly one CUDA-version feature: drop the default (JetPack 6's) one first.
        build.args(["--no-default-features", "--features", &format!("dynofa-hal-jetson/{cuda}")]);
    } else {
        let known: Vec<&str> = features.iter().filter(|f| f.starts_with("cuda-")).map(String::as_str).collect();
        bail!("dynofa-hal-jetson has no `{cuda}` feature; pass --cuda-feature with one of {}", known.join(", "));
    }
    sh(&mut build)?;

    let built = target_dir.join(TARGET).join("release").join("dynofa");
    let out = output_path(&target_dir, args.jetpack);
    std::fs::create_dir_all(out.parent().expect("the output has a folder"))?;
    std::fs::copy(&built, &out).with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
    let facts = check_binary(&out, args.jetpack)?;
    match facts.newest_glibc {
        Some(v) => eprintln!(
            "{}: aarch64, newest glibc symbol {v} (JetPack {} has {}.{}): ok",
            out.display(),
            args.jetpack.number(),
            glibc.0,
            glibc.1
        ),
        None => eprintln!("{}: aarch64, static (no glibc symbols): ok", out.display()),
    }
    if !args.no_qemu {
        if !succeeds(Command::new("qemu-aarch64").arg("--version")) {
            bail!("qemu-aarch64 is missing: `apt-get install qemu-user libc6-arm64-cross`, or pass --no-qemu");
        }
        sh(Command::new("qemu-aarch64").args(["-L", QEMU_SYSROOT]).arg(&out).arg("--help").stdout(Stdio::null()))
            .context("the built binary did not run under qemu")?;
        eprintln!("{} --help ran under qemu-aarch64: ok", out.display());
    }
    eprintln!("install it on a board with `cargo xtask flash --host USER@BOARD --jetpack {}`", args.jetpack.number());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_version_names() {
        assert_eq!(GlibcVersion::parse("GLIBC_2.17"), Some(GlibcVersion(2, 17, 0)));
        assert_eq!(GlibcVersion::parse("GLIBC_2.2.5"), Some(GlibcVersion(2, 2, 5)));
        assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::parse("GCC_3.0"), None);
        assert!(GlibcVersion(2, 34, 0) > JetPack::Five.glibc() && GlibcVersion(2, 34, 0) < JetPack::Six.glibc());
        assert_eq!(GlibcVersion(2, 2, 5).to_string(), "GLIBC_2.2.5");
    }

    #[test]
    fn reads_the_needed_glibc_of_a_real_binary() {
        // This test binary: a host ELF linked against the host's glibc.
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let facts = elf_facts(&data).unwrap();
        assert_ne!(facts.machine.0, 0);
        assert!(facts.newest_glibc.is_some_and(|v| v >= GlibcVersion(2, 2, 5)), "{facts:?}");
        assert!(elf_facts(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn verify_holds_the_binary_to_the_jetpacks_glibc() {
        let path = Path::new("target/jetson/jetpack5/dynofa");
        let debian12 = ElfFacts { machine: elf::EM_AARCH64, newest_glibc: Some(GlibcVersion(2, 34, 0)) };
        let e = debian12.verify(path, JetPack::Five).unwrap_err().to_string();
        assert!(e.contains("needs GLIBC_2.34 but JetPack 5 has glibc 2.31"), "{e}");
        debian12.verify(path, JetPack::Six).unwrap();
        let zig = ElfFacts { machine: elf::EM_AARCH64, newest_glibc: Some(GlibcVersion(2, 17, 0)) };
        zig.verify(path, JetPack::Five).unwrap();
        ElfFacts { newest_glibc: None, ..zig }.verify(path, JetPack::Five).unwrap();
        let x86 = ElfFacts { machine: elf::EM_X86_64, ..zig };
        assert!(x86.verify(path, JetPack::Six).unwrap_err().to_string().contains("not an aarch64 binary"));
    }
}
