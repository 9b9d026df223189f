//! `dynofa calibrate-bn`: re-estimate a sub-network's BatchNorm statistics on images, as OFA's
//! `set_running_statistics` does, and write them in the per-sub-network file `--bn` takes.
//! Also the sub-network selection (`--config` or `--lut`) and weights loading `dynofa eval` shares.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_hal_jetson::design::lutgen::{self, DesignLut};
use dynofa_kernels::DEFAULT_SEED;
use dynofa_kernels::calib::{BatchNet, Calibration};
use dynofa_kernels::dataset::{ImageFolder, prefetch, seeded_subset};
use dynofa_kernels::preprocess::{eval_input, load_image};
use indicatif::{ProgressBar, ProgressStyle};

/// The sub-networks a command works on: one config, or every entry of a LUT.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Subnets {
    /// One sub-network as OFA's JSON dict: {"ks": [20], "e": [20], "d": [5], "r": R or [R]}.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Every entry of this LUT (docs/lut-schema.md).
    #[arg(long)]
    lut: Option<PathBuf>,
}

/// The weights and sub-networks a command runs.
pub struct Selected {
    pub net: BatchNet,
    pub configs: Vec<SubnetConfig>,
    /// The LUT the configs came from, if they did.
    pub lut: Option<DesignLut>,
}

/// Load `--weights` (default: the seeded weights of the LUT's width, else w1.2) and the
/// sub-networks of `--config` or `--lut`.
pub fn select(weights: Option<&Path>, subnets: &Subnets) -> Result<Selected> {
    let lut = subnets.lut.as_deref().map(lutgen::read_lut).transpose()?;
    let width = lut.as_ref().map_or(1.2, |l| l.width as f64);
    let net = match weights {
        Some(path) => BatchNet::load(path)?,
        None => {
            let supernet = [Supernet::W1_0, Supernet::W1_2]
                .into_iter()
                .find(|n| (n.width_mult - width).abs() < 1e-6)
                .ok_or_else(|| anyhow!("the LUT's width {width} is not one of OFA's (1.0, 1.2)"))?;
            BatchNet::seeded(supernet, DEFAULT_SEED)
        }
    };
    let supernet = *net.weights().supernet();
    let configs = match (&subnets.config, &lut) {
        (Some(path), _) => {
            let text = std::fs::read(path).with_context(|| format!("{}: cannot read the config", path.display()))?;
            let cfg = SubnetConfig::from_json(&text, &supernet).map_err(|e| {
                anyhow!("{}: not a sub-network of OFA MobileNetV3 w{}: {e}", path.display(), supernet.width_mult)
            })?;
            vec![cfg]
        }
        (None, Some(lut)) => {
            if (lut.width as f64 - supernet.width_mult).abs() > 1e-6 {
                bail!(
                    "the LUT is for w{} but the weights are w{}; give --weights of its width",
                    lut.width,
                    supernet.width_mult
                );
            }
            lut.entries().iter().map(|e| e.config).collect()
        }
        (None, None) => unreachable!("clap requires --config or --lut"),
    };
    Ok(Selected { net, configs, lut })
}

/// Where a LUT entry's BN statistics live in a `--bn` folder.
pub fn bn_file(dir: &Path, cfg: &SubnetConfig) -> PathBuf {
    dir.join(format!("{}.safetensors", cfg.id()))
}

/// A progress bar over `len` images with their rate.
pub fn image_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let template = format!("{what} {{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} images, {{per_sec}}, ETA {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

/// Options of `dynofa calibrate-bn`.
#[derive(clap::Args)]
pub struct Args {
    /// An ImageNet-style folder (one sub-folder per class, JPEG/PNG), e.g. part of ImageNet's train set.
    #[arg(long)]
    images: PathBuf,
    #[command(flatten)]
    subnets: Subnets,
    /// Supernet weights (OFA's state dict as safetensors, see `dynofa import-ofa`); default: the
    /// seeded weights (of the LUT's width with --lut, else w1.2).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Images to use, a seeded random choice of the folder's (OFA uses 2,000).
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Images per batch; each batch's mean and variance enter the averages (OFA's default is 200;
    /// memory grows with it: about 1.5 GB for w1.2 at r = 224).
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Seed of the image choice and order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// With --config, the statistics file to write; with --lut, a folder that receives one
    /// `<sub-network id>.safetensors` per entry (what `dynofa eval --bn` reads).
    #[arg(long)]
    out: PathBuf,
    /// Threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    if args.batch == 0 || args.count == 0 {
        bail!("--batch and --count must be at least 1");
    }
    let Selected { net, configs, lut } = select(args.weights.as_deref(), &args.subnets)?;
    let folder = ImageFolder::open(&args.images)?;
    let order = seeded_subset(folder.samples.len(), args.count, args.seed);
    if order.len() < args.count {
        eprintln!(
            "{} holds {} images, fewer than --count {}: using them all",
            args.images.display(),
            order.len(),
            args.count
        );
    }
    if lut.is_some() {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("{}: cannot create the folder", args.out.display()))?;
    }
    for (i, cfg) in configs.iter().enumerate() {
        let out = if lut.is_some() { bn_file(&args.out, cfg) } else { args.out.clone() };
        let r = cfg.r as usize;
        let mut calib = Calibration::new(&net, cfg)?;
        if let Some(t) = args.threads {
            calib = calib.with_threads(t);
        }
        let bar = image_bar(order.len(), &format!("sub-network {}/{} (r {r})", i + 1, configs.len()));
        let start = Instant::now();
        let paths = order.iter().map(|&k| folder.samples[k].0.clone()).collect();
        let mut batch = Vec::with_capacity(args.batch);
        for input in prefetch(paths, 2 * args.batch, move |p| load_image(p).map(|img| eval_input(&img, r))) {
            batch.push(input?);
            if batch.len() == args.batch {
                calib.add_batch(&batch);
                bar.inc(batch.len() as u64);
                batch.clear();
            }
        }
        calib.add_batch(&batch);
        bar.finish_and_clear();
        let source = format!(
            "dynofa calibrate-bn: batch statistics (OFA's set_running_statistics) over {} images of {} \
             (seed {}, batch {}), evaluation preprocessing at r {r}; {}",
            calib.images(),
            args.images.display(),
            args.seed,
            args.batch,
            lutgen::today()
        );
        let bytes = calib.to_safetensors(HashMap::from([("source".to_string(), source)]));
        // The engine must accept what was written.
        net.weights().bn_statistics_from_safetensors(&bytes, &out, cfg)?;
        std::fs::write(&out, &bytes).with_context(|| format!("{}: cannot write", out.display()))?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{}: {} BN layers from {} images in {secs:.1} s ({:.1} images/s)",
            out.display(),
            calib.statistics().len() / 2,
            calib.images(),
            calib.images() as f64 / secs
        );
    }
    Ok(())
}
