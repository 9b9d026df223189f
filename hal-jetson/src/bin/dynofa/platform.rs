//! `dynofa platform`: what the Linux platform finds here (board, GPU and CPU DVFS, loads, EMC, and
//! what the CUDA engine would find), and for each part that is unavailable, which file failed and
//! what to do. `--pin-gpu`/`--pin-cpu` try a pin (checking that the udev rule works) and restore
//! it, or with `--hold` keep it until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use dynofa_core::hal::FrequencyControl;
use dynofa_hal_jetson::linux::{Platform, SysfsError};

/// Options of `dynofa platform`.
#[derive(clap::Args)]
pub struct Args {
    /// Look under this root instead of `/` (a copied or fake sysfs tree).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Milliseconds over which the CPU load is measured before the report.
    #[arg(long, default_value_t = 200)]
    sample_ms: u64,
    /// Pin the GPU to this operating point in kHz (one the report lists).
    #[arg(long)]
    pin_gpu: Option<u32>,
    /// Pin the CPU to this operating point in kHz (one the report lists).
    #[arg(long)]
    pin_cpu: Option<u32>,
    /// Keep the pins until Ctrl-C (or SIGTERM), reporting clock changes by other tools, then restore.
    #[arg(long)]
    hold: bool,
}

fn pin<C: FrequencyControl<Error = SysfsError>>(
    name: &str,
    control: Result<&mut C, &mut SysfsError>,
    khz: u32,
) -> Result<()> {
    let control = control.map_err(|e| anyhow::anyhow!("cannot pin the {name}: {e}"))?;
    control.set_khz(khz).with_context(|| format!("cannot pin the {name} to {khz} kHz"))?;
    println!("{name} pinned to {khz} kHz (reads back {} kHz)", control.current_khz()?);
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let mut platform = Platform::probe(&args.root);
    std::thread::sleep(Duration::from_millis(args.sample_ms));
    print!("{}", platform.report());
    match dynofa_hal_jetson::gpu::probe() {
        Ok(gpu) => println!("cuda:     {gpu}"),
        Err(e) => println!("cuda:     unavailable: {e}"),
    }
    if let Some(khz) = args.pin_gpu {
        pin("gpu", platform.gpu.as_mut(), khz)?;
    }
    if let Some(khz) = args.pin_cpu {
        pin("cpu", platform.cpu.as_mut(), khz)?;
    }
    if args.hold && (args.pin_gpu.is_some() || args.pin_cpu.is_some()) {
        println!("holding the clocks; Ctrl-C restores them");
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let gpu = platform.gpu.as_mut().map_or(Ok(Vec::new()), |g| g.overrides());
            let cpu = platform.cpu.as_mut().map_or(Ok(Vec::new()), |c| c.overrides());
            for change in gpu?.into_iter().chain(cpu?) {
                println!("{change}");
            }
        }
    }
    // Dropping the platform restores what was pinned.
    if args.pin_gpu.is_some() || args.pin_cpu.is_some() {
        drop(platform);
        println!("restored the original clock settings");
    }
    Ok(())
}
