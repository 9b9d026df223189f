//! `dynofa import-ofa`: convert a released OFA checkpoint (a torch pickle) to safetensors that
//! `--weights` takes, without Python and without running code from the file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use dynofa_hal_jetson::design::lutgen;
use dynofa_kernels::SupernetWeights;
use dynofa_kernels::import::Checkpoint;

/// Options of `dynofa import-ofa`.
#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint: `torch.save({"state_dict": ...})` in torch's zip or legacy format, e.g. OFA's
    /// `ofa_mbv3_d234_e346_k357_w1.2`.
    checkpoint: PathBuf,
    /// The safetensors file to write: the state dict's tensors under their names (OFA's legacy
    /// `.mobile_inverted_conv.` becomes `.conv.`), dtypes kept.
    out: PathBuf,
    /// Write any state dict, without checking that it is an OFA MobileNetV3 supernet.
    #[arg(long)]
    any: bool,
}

pub fn run(args: Args) -> Result<()> {
    let ckpt = Checkpoint::load(&args.checkpoint)?;
    let name = args
        .checkpoint
        .file_name()
        .map_or_else(|| args.checkpoint.display().to_string(), |n| n.to_string_lossy().into());
    let source = format!(
        "dynofa import-ofa {} from {name} ({:?} torch checkpoint, {} tensors, {} legacy names updated), {}",
        env!("CARGO_PKG_VERSION"),
        ckpt.format,
        ckpt.tensors.len(),
        ckpt.renamed,
        lutgen::today()
    );
    let bytes = ckpt.to_safetensors(HashMap::from([("source".to_string(), source)]));
    let summary = if args.any {
        "not checked as an OFA supernet (--any)".to_string()
    } else {
        let weights = SupernetWeights::from_safetensors(&bytes, &args.out).with_context(|| {
            format!(
                "{}: converted, but it is not an OFA MobileNetV3 state dict; --any writes it anyway",
                args.checkpoint.display()
            )
        })?;
        format!("OFA MobileNetV3 w{}, every tensor checked; use it as --weights", weights.supernet().width_mult)
    };
    std::fs::write(&args.out, &bytes).with_context(|| format!("{}: cannot write", args.out.display()))?;
    let mut dtypes = BTreeMap::new();
    for t in &ckpt.tensors {
        *dtypes.entry(format!("{:?}", t.dtype)).or_insert(0) += 1;
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    println!(
        "wrote {} tensors ({}) to {}{}; {summary}",
        ckpt.tensors.len(),
        dtypes.join(", "),
        args.out.display(),
        match ckpt.renamed {
            0 => String::new(),
            n => format!(", {n} legacy `.mobile_inverted_conv.` names updated"),
        }
    );
    Ok(())
}
