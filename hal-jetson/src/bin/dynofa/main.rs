//! `dynofa`: the Dynamic-OFA runtime and its design-time tools.

// The options' doc comments are clap's `--help` text, written for a terminal: JSON such as
// `{"ks": [20], ...}` in them is an example to type, not an intra-doc link or an HTML tag.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod calibrate_bn;
mod eval;
mod figures;
mod gen_weights;
mod import_ofa;
mod infer;
mod platform;
mod predict;
mod profile;
mod run;
mod search;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dynofa", version, about = "Dynamic-OFA in Rust: runtime switching between OFA sub-networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: the runtime manager switching sub-networks live on real inference (default: a
    /// built-in demo with target steps and contention), with a summary, a trace CSV and an SVG plot.
    Run(run::Args),
    /// Predict a sub-network's ImageNet top-1 with OFA's accuracy predictor.
    Predict(predict::Args),
    /// Run one sub-network on an input with the CPU or CUDA engine (logits to a safetensors file).
    Infer(infer::Args),
    /// Write the seeded default supernet weights as an OFA state dict (safetensors).
    GenWeights(gen_weights::Args),
    /// Evolutionary search for a Pareto set per processing unit, written as a LUT.
    Search(search::Args),
    /// Time sub-networks on this machine and write them as a LUT of measured latencies.
    Profile(profile::Args),
    /// What the Linux/Jetson platform finds here: board, GPU/CPU DVFS (or why not), loads, EMC.
    Platform(platform::Args),
    /// Convert a released OFA checkpoint (torch pickle) to safetensors for --weights, safely.
    ImportOfa(import_ofa::Args),
    /// Re-estimate a sub-network's BN statistics on images (OFA's set_running_statistics).
    CalibrateBn(calibrate_bn::Args),
    /// Top-1/top-5 of sub-networks over an ImageNet-style folder; measured top-1 into the LUT.
    Eval(eval::Args),
    /// The Dynamic-OFA paper's figures (1, 3 to 8) as SVG with the CSV behind each, from this LUT.
    Figures(figures::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => run::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Search(args) => search::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Infer(args) => infer::run(args),
        Command::GenWeights(args) => gen_weights::run(args),
        Command::Platform(args) => platform::run(args),
        Command::ImportOfa(args) => import_ofa::run(args),
        Command::CalibrateBn(args) => calibrate_bn::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Figures(args) => figures::run(args),
    };
    // One line with the whole chain, and no backtrace even under RUST_BACKTRACE: a bad input
    // gets a reason, not a trace.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
