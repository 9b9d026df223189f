//! [`GpuEngine`] on cudarc: NVRTC compile (cached on disk), one upload, one CUDA graph per sub-network.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::result::DriverError;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream, DevicePtr, PinnedHostSlice, sys,
};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use dynofa_core::arch::{MAX_RESOLUTION, NUM_CLASSES};
use dynofa_core::hal::{ErrorType, InferenceEngine};
use dynofa_core::{SubnetConfig, SubnetId};
use dynofa_kernels::gpu::{
    BarrierOrder, Buffer, GRID_BARRIER, GpuImage, Kernel, Launch, PERSISTENT, PERSISTENT_BODY_SHARED,
    PERSISTENT_THREADS, PersistentSpan, Step, Target, bn_image, persistent_shared, persistent_spans, persistent_steps,
    source,
};
use dynofa_kernels::{BnTable, EngineError, SupernetWeights};

use super::GpuError;

/// A driver error as a [`GpuError`].
fn driver(what: &'static str) -> impl FnOnce(DriverError) -> GpuError {
    move |e| GpuError::Driver { what, error: format!("{e:?}") }
}

/// How the kernels were obtained at start.
#[derive(Debug, Clone)]
pub struct CompileReport {
    /// The GPU's name.
    pub device: String,
    /// The GPU's architecture, `compute_<major><minor>` (the PTX may target an older one, see
    /// [`GpuEngine::new`]).
    pub arch: String,
    /// Seconds spent compiling (0 when the cache had them).
    pub compile_s: f64,
    /// The cached PTX (written after a compile, read otherwise); `None` when no cache folder exists.
    pub cache: Option<PathBuf>,
    /// Whether the PTX came from the cache.
    pub cached: bool,
}

/// How a [`GpuEngine`] plans and launches. The kernels and programmatic launch are on by default
/// and can be turned off to compare; measuring the alternatives (`tune`) is off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuOptions {
    /// Programmatic dependent launch where the GPU has it (sm_90 and newer): each kernel node may
    /// be scheduled while the one before it finishes, and waits in the kernel for that one's
    /// results. If the driver refuses such a capture, the engine captures without it from then on
    /// ([`GpuEngine::programmatic_launch`] says which).
    pub programmatic_launch: bool,
    /// The warps kernels ([`Kernel::PointwiseWarps`], [`Kernel::PointwiseWarps16`]) for the
    /// pointwise layers where the plan rates them fastest.
    pub pointwise_warps: bool,
    /// [`Kernel::PointwiseKSplit`] for the pointwise layers where the plan rates it fastest (and
    /// among `tune`'s alternatives).
    pub pointwise_ksplit: bool,
    /// [`Kernel::PointwiseMma`] (the tensor cores, sm_80 and newer) among `tune`'s alternatives
    /// for the pointwise layers; not yet timed on a GPU, so the plan does not pick it.
    pub pointwise_mma: bool,
    /// [`Kernel::DepthwiseRegion`] for the depthwise layers.
    pub depthwise_region: bool,
    /// Kernels that run several layers at once instead of a launch per layer:
    /// [`Kernel::StemBlock`], and for `tune` to weigh [`Kernel::ExpandDepthwise`] (it lost to the
    /// separate launches on the H100, so the plan does not pick it) and
    /// [`Kernel::DepthwiseProject`] (not yet timed on a GPU).
    pub fused: bool,
    /// Page-locked input memory that is write-combined (the host only writes it) rather than
    /// cached: which of the two the host copies a frame into faster depends on the machine
    /// (`gpu-bench` times both).
    pub write_combined_input: bool,
    /// The classifier writes the logits straight into page-locked host memory mapped into the
    /// GPU's address space, rather than the graph copying them there after it: a graph node less.
    pub mapped_logits: bool,
    /// The first kernel reads the input straight from mapped page-locked host memory, rather than
    /// the graph copying it to the GPU first. Off by default: a discrete GPU then reads it over
    /// PCIe, some of it twice (the tiles' halos); on a Jetson, whose GPU shares the host's memory,
    /// it saves a copy within the same DRAM. Measured on neither yet (`gpu-bench` times it).
    pub mapped_input: bool,
    /// Measure, when a sub-network is captured, each layer's alternatives ([`Step`]: kernel,
    /// tiling, split) on this GPU and keep the fastest, rather than the one the plan's models
    /// rate fastest. Off by default: it adds about a millisecond per alternative at start-up
    /// ([`GpuEngine::tuning`] says what it found).
    pub tune: bool,
    /// Run each sub-network's launches in one cooperative launch of the persistent kernel
    /// ([`PERSISTENT`]): a block per multiprocessor runs each launch's blocks in turn, and a barrier
    /// across the GPU (an atomic add per block and a poll) stands between launches where the graph
    /// would have a node per launch. The graph then holds the input copy and that one kernel. Off
    /// by default: on the H100 and H200 that timed it (11th session) its frames took 1.09 to
    /// 1.35x as long as a node per launch. With `tune`, each sub-network's graph is whichever of
    /// the two is faster on this GPU ([`Tuning::persistent`]).
    pub persistent: bool,
    /// How the persistent kernel's barrier is ordered (release/acquire by default: the faster on
    /// the GPUs that timed both, see [`BarrierOrder`]).
    pub barrier: BarrierOrder,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            programmatic_launch: true,
            pointwise_warps: true,
            pointwise_ksplit: true,
            pointwise_mma: true,
            depthwise_region: true,
            fused: true,
            write_combined_input: true,
            mapped_logits: true,
            mapped_input: false,
            tune: false,
            persistent: false,
            barrier: BarrierOrder::default(),
        }
    }
}

/// What measuring a sub-network's alternatives ([`GpuOptions::tune`]) found. Times are each
/// alternative's launches alone in a graph, repeated (as [`GpuEngine::kernel_times`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tuning {
    /// Steps with more than one alternative: each was measured.
    pub measured: usize,
    /// Of those, the steps where another alternative than the plan's first was faster.
    pub changed: usize,
    /// GPU time (µs) of the measured steps with the plan's first alternatives.
    pub planned_us: f32,
    /// The same with the fastest alternatives, which the graph uses.
    pub picked_us: f32,
    /// With [`GpuOptions::persistent`]: the whole graph's GPU time in µs with a node per launch,
    /// and with the persistent kernel; the graph is the faster of the two.
    pub persistent: Option<(f32, f32)>,
    /// Seconds the measurement took.
    pub seconds: f64,
}

/// Launches of each alternative in a measurement (as `gpu-bench` times each launch).
const TUNE_REPEAT: usize = 20;

/// A captured sub-network.
struct Captured {
    id: SubnetId,
    r: usize,
    graph: CudaGraph,
    /// The launches the graph runs, and what measuring chose them, if it did.
    plan: Vec<Launch>,
    tuning: Option<Tuning>,
    /// The persistent kernel's table of `plan`, which the graph reads ([`GpuOptions::persistent`]).
    _table: Option<PersistentTable>,
}

/// The persistent kernel ([`PERSISTENT`]), the dynamic shared memory it is launched with, and its
/// barrier's two counters (zero between launches).
struct Persistent {
    function: CudaFunction,
    shared: u32,
    arrived: CudaSlice<u32>,
}

/// A plan's table for the persistent kernel (uploaded), and its launches.
struct PersistentTable {
    table: CudaSlice<u64>,
    launches: usize,
}

impl Persistent {
    fn load(module: &Arc<CudaModule>, stream: &Arc<CudaStream>) -> Result<Self, GpuError> {
        use sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        let function = module.load_function(PERSISTENT).map_err(driver("kernel lookup"))?;
        let opt_in = stream
            .context()
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(driver("shared memory query"))?;
        let own = function.shared_size_bytes().map_err(driver("kernel attribute query"))?;
        let shared = persistent_shared(opt_in.saturating_sub(own) as u32).ok_or_else(|| GpuError::Driver {
            what: "persistent kernel setup",
            error: format!(
                "a block may have {opt_in} bytes of shared memory here, {own} of them the kernel's own; it needs \
                 {PERSISTENT_BODY_SHARED} more: run without the persistent kernel"
            ),
        })?;
        function
            .set_attribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared as i32)
            .map_err(driver("kernel attribute"))?;
        Ok(Persistent {
            function,
            shared,
            arrived: stream.alloc_zeros::<u32>(2).map_err(driver("work buffer allocation"))?,
        })
    }
}

/// How a recorded graph runs a plan's launches.
#[derive(Clone, Copy)]
enum Launching<'a> {
    /// A kernel per launch, each after the first with programmatic dependent launch if set.
    Kernels { programmatic: bool },
    /// The persistent kernel on this table of the launches ([`GpuOptions::persistent`]).
    Persistent { kernel: &'a Persistent, table: &'a PersistentTable },
}

/// The CUDA inference engine. [`GpuEngine::prepare`] captures a sub-network's graph (at start-up);
/// [`InferenceEngine::activate`] then only selects it (no upload, no allocation) and
/// [`InferenceEngine::infer`] puts the input in a page-locked buffer, replays the graph (which
/// copies the input to the GPU, unless the first kernel reads it mapped, and runs the plan, whose
/// classifier writes the logits into mapped page-locked memory, or the graph copies them there:
/// [`GpuOptions`]) and waits for it: one launch and one synchronisation per frame.
pub struct GpuEngine {
    // Graphs first: they are dropped before the buffers and the module they use.
    graphs: Vec<Captured>,
    active: Option<usize>,
    bn_sets: Vec<(SubnetId, CudaSlice<f32>)>,
    bn_default: CudaSlice<f32>,
    work: Vec<(Buffer, CudaSlice<f32>)>,
    weights_dev: CudaSlice<f32>,
    /// Page-locked input and logits, which the graphs copy from and to; where they are mapped
    /// ([`GpuOptions::mapped_input`], [`GpuOptions::mapped_logits`]), their device addresses,
    /// which the kernels read and write instead.
    host_in: PinnedHostSlice<f32>,
    host_out: PinnedHostSlice<f32>,
    input_mapped: Option<u64>,
    logits_mapped: Option<u64>,
    /// Every kernel's function, in [`Kernel::ALL`]'s order ([`Kernel::id`]).
    functions: Vec<CudaFunction>,
    /// The persistent kernel, with [`GpuOptions::persistent`].
    persistent: Option<Persistent>,
    module: Arc<CudaModule>,
    stream: Arc<CudaStream>,
    _ctx: Arc<CudaContext>,
    image: GpuImage,
    /// What the plans are made for: the GPU's multiprocessors, the kernels allowed.
    target: Target,
    /// Whether captures measure each step's alternatives (GpuOptions::tune).
    tune: bool,
    /// How the persistent kernel's barrier is ordered (GpuOptions::barrier).
    barrier: BarrierOrder,
    /// Whether graphs are captured with programmatic dependent launch, and why not any more.
    programmatic: bool,
    programmatic_refused: Option<String>,
    weights: SupernetWeights,
    report: CompileReport,
}

// SAFETY: what keeps cudarc's graph handles from being `Send` is their raw pointers. The driver's
// objects are not tied to a thread, only to the context, and every call binds the context first:
// cudarc's own calls do, and `enqueue` does before its raw launches and copies. The engine is used by
// one thread at a time (`&mut self`), so `dynofa run` can build it on one thread and run it on another.
unsafe impl Send for GpuEngine {}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("report", &self.report)
            .field("graphs", &self.graphs.len())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Where compiled kernels are kept: `$XDG_CACHE_HOME/dynofa` or `~/.cache/dynofa`.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("dynofa"))
}

/// FNV-1a, 64 bits: a stable key for the source (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Fail with [`GpuError::NoNvrtc`] before cudarc would panic on a missing libnvrtc.
fn nvrtc_present() -> Result<(), GpuError> {
    // SAFETY: only tries to dlopen the NVRTC library.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } { Ok(()) } else { Err(GpuError::NoNvrtc) }
}

/// The compute capabilities (`major * 10 + minor`) that the NVRTC found here compiles for,
/// ascending (CUDA 13's dropped Volta, so Xavier's 72 needs an older one); needs no GPU.
pub fn nvrtc_archs() -> Result<Vec<u32>, GpuError> {
    use cudarc::nvrtc::sys::{nvrtcGetNumSupportedArchs, nvrtcGetSupportedArchs, nvrtcResult};
    nvrtc_present()?;
    let failed =
        |r: nvrtcResult| GpuError::Compile { arch: "any".into(), log: format!("listing NVRTC's targets: {r:?}") };
    let mut n = 0;
    // SAFETY: NVRTC writes one int.
    let r = unsafe { nvrtcGetNumSupportedArchs(&mut n) };
    if r != nvrtcResult::NVRTC_SUCCESS {
        return Err(failed(r));
    }
    let mut archs = vec![0; n.max(0) as usize];
    // SAFETY: NVRTC writes `n` ints, the length it just reported.
    let r = unsafe { nvrtcGetSupportedArchs(archs.as_mut_ptr()) };
    if r != nvrtcResult::NVRTC_SUCCESS {
        return Err(failed(r));
    }
    let mut archs: Vec<u32> = archs.into_iter().map(|a| a as u32).collect();
    archs.sort_unstable();
    Ok(archs)
}

/// The kernels ([`source`]) compiled by NVRTC to PTX for `arch` (`compute_87`, ...); needs no GPU.
pub fn compile_ptx(arch: &str) -> Result<String, GpuError> {
    nvrtc_present()?;
    let options = CompileOptions { options: vec![format!("--gpu-architecture={arch}")], ..Default::default() };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(source(), options).map_err(|e| GpuError::Compile {
        arch: arch.into(),
        log: match e {
            // One line, as every error of the program.
            CompileError::CompileError { log, .. } => log.to_string_lossy().trim().replace('\n', " | "),
            e => format!("{e:?}"),
        },
    })?;
    Ok(ptx.to_src())
}

/// Whether this build's CUDA version has `cuLaunchKernelEx` (CUDA 11.8 and newer).
const PROGRAMMATIC_BUILT: bool = cfg!(not(feature = "cuda-11040"));

/// What the driver says of GPU 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its name.
    pub name: String,
    /// Its compute capability.
    pub major: i32,
    /// Its compute capability's minor number.
    pub minor: i32,
    /// Its multiprocessors.
    pub sms: i32,
    /// Whether it shares the host's memory (a Jetson) rather than having its own.
    pub integrated: bool,
}

/// GPU 0's primary context and what the driver says of the GPU, or why there is none (without
/// the panic cudarc gives where the driver library is missing).
fn open_device() -> Result<(Arc<CudaContext>, Device), GpuError> {
    // SAFETY: only tries to dlopen the driver library.
    if !unsafe { sys::is_culib_present() } {
        return Err(GpuError::NoDriver);
    }
    let ctx = CudaContext::new(0).map_err(|e| match e.0 {
        sys::CUresult::CUDA_ERROR_NO_DEVICE | sys::CUresult::CUDA_ERROR_INVALID_DEVICE => {
            GpuError::NoDevice(format!("{e:?}"))
        }
        _ => GpuError::Driver { what: "context creation", error: format!("{e:?}") },
    })?;
    let (major, minor) = ctx.compute_capability().map_err(driver("compute capability query"))?;
    let name = ctx.name().map_err(driver("device name query"))?;
    let attribute = |a, what| ctx.attribute(a).map_err(driver(what));
    let sms =
        attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "multiprocessor count query")?;
    let integrated = attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_INTEGRATED, "integrated query")? != 0;
    Ok((ctx, Device { name, major, minor, sms, integrated }))
}

/// What the CUDA engine would find here, in one line: GPU 0 and the architectures NVRTC compiles
/// for, or why the engine cannot start.
pub fn probe() -> Result<String, GpuError> {
    let (_, d) = open_device()?;
    let memory = if d.integrated { "integrated, the host's memory" } else { "discrete" };
    let nvrtc = match nvrtc_archs() {
        Ok(archs) => match (archs.first(), archs.last()) {
            (Some(lo), Some(hi)) => format!("NVRTC compiles for compute_{lo} to compute_{hi}"),
            _ => "NVRTC lists no architecture".into(),
        },
        Err(e) => e.to_string(),
    };
    Ok(format!("{}, compute {}.{}, {} multiprocessors, {memory}; {nvrtc}", d.name, d.major, d.minor, d.sms))
}

impl GpuEngine {
    /// Start on GPU 0: load the driver, compile (or load cached) kernels, upload `weights`, with
    /// the default [`GpuOptions`].
    pub fn new(weights: SupernetWeights) -> Result<Self, GpuError> {
        Self::with_options(weights, GpuOptions::default())
    }

    /// [`GpuEngine::new`] with `options`.
    pub fn with_options(weights: SupernetWeights, options: GpuOptions) -> Result<Self, GpuError> {
        let (ctx, Device { name, major, minor, sms, .. }) = open_device()?;
        // Stream capture fails with cudarc's per-buffer events (measured with 0.19.10); the engine
        // orders all work on its one stream itself.
        // SAFETY: every buffer is used on `stream` only, and the engine synchronises it.
        unsafe { ctx.disable_event_tracking() };
        let (module, report) = Self::load_kernels(&ctx, name, (major * 10 + minor) as u32)?;
        let functions = Kernel::ALL
            .iter()
            .map(|k| module.load_function(k.name()))
            .collect::<Result<_, _>>()
            .map_err(driver("kernel lookup"))?;

        let stream = ctx.new_stream().map_err(driver("stream creation"))?;
        let image = GpuImage::new(&weights);
        let net = *weights.supernet();
        let upload = driver("weight upload");
        let weights_dev = stream.clone_htod(&image.data).map_err(upload)?;
        let bn_default = stream.clone_htod(&bn_image(&weights, None)).map_err(driver("BN upload"))?;
        let work = Buffer::WORK
            .iter()
            .map(|&b| stream.alloc_zeros::<f32>(b.len(&net).max(1)).map(|s| (b, s)))
            .collect::<Result<_, _>>()
            .map_err(driver("work buffer allocation"))?;
        stream.synchronize().map_err(driver("upload"))?;
        let wc = if options.write_combined_input { sys::CU_MEMHOSTALLOC_WRITECOMBINED } else { 0 };
        let input_len = 3 * (MAX_RESOLUTION as usize).pow(2);
        // SAFETY: `infer` writes the input before the graph reads it, and the graph writes the
        // logits before `infer` reads them.
        let (host_in, input_mapped) =
            unsafe { page_locked(&ctx, input_len, wc, options.mapped_input, "page-locked input allocation") }?;
        let (host_out, logits_mapped) =
            unsafe { page_locked(&ctx, NUM_CLASSES, 0, options.mapped_logits, "page-locked logits allocation") }?;
        let persistent = match options.persistent {
            true => Some(Persistent::load(&module, &stream)?),
            false => None,
        };
        Ok(GpuEngine {
            graphs: Vec::new(),
            active: None,
            bn_sets: Vec::new(),
            bn_default,
            work,
            weights_dev,
            host_in,
            host_out,
            input_mapped,
            logits_mapped,
            functions,
            persistent,
            module,
            stream,
            _ctx: ctx,
            image,
            target: Target {
                sms: sms.max(1) as usize,
                pointwise_warps: options.pointwise_warps,
                pointwise_ksplit: options.pointwise_ksplit,
                // tf32 tensor cores: sm_80 and newer.
                pointwise_mma: options.pointwise_mma && major >= 8,
                depthwise_region: options.depthwise_region,
                fused: options.fused,
            },
            tune: options.tune,
            barrier: options.barrier,
            // The persistent kernel is one launch: nothing to overlap.
            programmatic: options.programmatic_launch && !options.persistent && PROGRAMMATIC_BUILT && major >= 9,
            programmatic_refused: None,
            weights,
            report,
        })
    }

    /// The kernels' module: the cached PTX for this source and `arch` if the driver accepts it, else
    /// a fresh NVRTC compile (then cached).
    fn load_kernels(
        ctx: &Arc<CudaContext>,
        device: String,
        cc: u32,
    ) -> Result<(Arc<CudaModule>, CompileReport), GpuError> {
        let arch = format!("compute_{cc}");
        let src = source();
        let cache = cache_dir().map(|d| d.join(format!("kernels-{:016x}-{arch}.ptx", fnv1a(src.as_bytes()))));
        // A NUL would make cudarc panic when it passes the text on as a C string.
        if let Some(text) = cache.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).filter(|t| !t.contains('\0')) {
            // A PTX from a newer NVRTC than this driver supports fails to load: compile again then.
            if let Ok(module) = ctx.load_module(Ptx::from_src(text)) {
                return Ok((module, CompileReport { device, arch, compile_s: 0.0, cache, cached: true }));
            }
        }
        // PTX runs on the GPU it was made for and newer ones: target the newest that this NVRTC
        // knows up to the GPU's own (a GPU newer than the NVRTC still gets kernels).
        let archs = nvrtc_archs()?;
        let Some(target) = archs.iter().rev().find(|&&a| a <= cc) else {
            return Err(GpuError::Compile {
                arch,
                log: format!(
                    "this NVRTC compiles for compute_{} to compute_{} only; use the CUDA of the GPU's JetPack or driver",
                    archs.first().unwrap_or(&0),
                    archs.last().unwrap_or(&0)
                ),
            });
        };
        let start = Instant::now();
        let text = compile_ptx(&format!("compute_{target}"))?;
        let compile_s = start.elapsed().as_secs_f64();
        // The cache only saves time: a folder that cannot be written is not an error.
        let cache = cache.filter(|p| {
            p.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok()) && std::fs::write(p, &text).is_ok()
        });
        let module = ctx.load_module(Ptx::from_src(text)).map_err(driver("module load"))?;
        Ok((module, CompileReport { device, arch, compile_s, cache, cached: false }))
    }

    /// How the kernels were compiled or loaded.
    pub fn compile_report(&self) -> &CompileReport {
        &self.report
    }

    /// The weights.
    pub fn weights(&self) -> &SupernetWeights {
        &self.weights
    }

    /// Capture a CUDA graph for each of `configs` not captured yet (allocates: call at start-up).
    pub fn prepare(&mut self, configs: &[SubnetConfig]) -> Result<(), GpuError> {
        for cfg in configs {
            cfg.validate(self.weights.supernet()).map_err(EngineError::from)?;
            if self.find(cfg.id()).is_err() {
                self.capture(cfg)?;
            }
        }
        Ok(())
    }

    /// Use `table` (from [`SupernetWeights::load_bn_statistics`]) whenever `config` is active; a
    /// captured graph of `config` is captured again. Allocates: call it at start-up.
    pub fn register_bn(&mut self, config: &SubnetConfig, table: &BnTable) -> Result<(), GpuError> {
        config.validate(self.weights.supernet()).map_err(EngineError::from)?;
        let id = config.id();
        let set = self.stream.clone_htod(&bn_image(&self.weights, Some(table))).map_err(driver("BN upload"))?;
        match self.bn_sets.binary_search_by_key(&id, |(k, _)| *k) {
            Ok(i) => {
                // The old set stays alive until no graph reads it any more.
                let old = std::mem::replace(&mut self.bn_sets[i].1, set);
                if self.find(id).is_ok() {
                    self.capture(config)?;
                }
                drop(old);
            }
            Err(i) => {
                self.bn_sets.insert(i, (id, set));
                if self.find(id).is_ok() {
                    self.capture(config)?;
                }
            }
        }
        Ok(())
    }

    /// Sub-networks with a captured graph.
    pub fn prepared(&self) -> usize {
        self.graphs.len()
    }

    fn find(&self, id: SubnetId) -> Result<usize, usize> {
        self.graphs.binary_search_by_key(&id, |c| c.id)
    }

    /// Whether graphs captured from now on use programmatic dependent launch, and if the driver
    /// refused it, its error.
    pub fn programmatic_launch(&self) -> (bool, Option<&str>) {
        (self.programmatic, self.programmatic_refused.as_deref())
    }

    /// Record `cfg`'s launch plan into a graph (replacing an earlier one of the same sub-network),
    /// with programmatic dependent launch if that is on and the driver takes it.
    fn capture(&mut self, cfg: &SubnetConfig) -> Result<(), GpuError> {
        match self.capture_with(cfg) {
            Err(e) if self.programmatic => {
                // Only a plain capture that works shows that the driver refused the programmatic
                // one; an error both share leaves the setting alone. The setting is off during
                // the retry, so that measuring the alternatives (tune) captures plain graphs too.
                self.programmatic = false;
                let plain = self.capture_with(cfg);
                self.programmatic = plain.is_err();
                plain?;
                self.programmatic_refused = Some(e.to_string());
                Ok(())
            }
            done => done,
        }
    }

    /// [`Self::capture`] with the current launch setting.
    fn capture_with(&mut self, cfg: &SubnetConfig) -> Result<(), GpuError> {
        // Before the capture: these wait on the buffers' (never recorded) events.
        let host = (
            self.host_in.as_ptr().map_err(driver("page-locked input"))?,
            self.host_out.as_mut_ptr().map_err(driver("page-locked logits"))?,
        );
        let (plan, mut tuning) = self.choose(cfg)?;
        let input = Some((host, 3 * (cfg.r as usize).pow(2)));
        let bn = self.bn_set(cfg);
        let kernels = Launching::Kernels { programmatic: self.programmatic };
        let (graph, table) = match &self.persistent {
            None => (self.record(&plan, bn, 1, input, kernels)?, None),
            Some(kernel) => {
                let table = self.persistent_table(&plan, bn)?;
                let persistent = self.record(&plan, bn, 1, input, Launching::Persistent { kernel, table: &table })?;
                match tuning.as_mut() {
                    None => (persistent, Some(table)),
                    // Measuring: the faster of the two whole graphs.
                    Some(t) => {
                        let start = Instant::now();
                        let graph = self.record(&plan, bn, 1, input, kernels)?;
                        let micros = |g: &CudaGraph| Ok::<f32, GpuError>(self.replay_ms(g, TUNE_REPEAT)? * 1e3);
                        let (nodes, one) = (micros(&graph)?, micros(&persistent)?);
                        t.persistent = Some((nodes, one));
                        t.seconds += start.elapsed().as_secs_f64();
                        if one < nodes { (persistent, Some(table)) } else { (graph, None) }
                    }
                }
            }
        };
        let id = cfg.id();
        let captured = Captured { id, r: cfg.r as usize, graph, plan, tuning, _table: table };
        match self.find(id) {
            Ok(i) => self.graphs[i] = captured,
            Err(i) => {
                self.graphs.insert(i, captured);
                // Indices moved: find the active one again.
                if let Some(a) = self.active.as_mut().filter(|a| **a >= i) {
                    *a += 1;
                }
            }
        }
        Ok(())
    }

    /// The launches for `cfg`: the plan's, or with [`GpuOptions::tune`] each step's fastest
    /// alternative as measured here, run after the plan itself has filled every buffer.
    fn choose(&self, cfg: &SubnetConfig) -> Result<(Vec<Launch>, Option<Tuning>), GpuError> {
        let steps = self.image.steps(cfg, self.target);
        let first = |s: &Step| s.alternatives[0].clone();
        let planned: Vec<Launch> = steps.iter().flat_map(first).collect();
        if !self.tune {
            return Ok((planned, None));
        }
        let start = Instant::now();
        let bn = self.bn_set(cfg);
        self.fill(&planned, bn)?;
        let (mut plan, mut tuning) = (Vec::with_capacity(planned.len()), Tuning::default());
        for mut step in steps {
            if step.alternatives.len() > 1 {
                let times = step
                    .alternatives
                    .iter()
                    .map(|a| Ok(self.graph_micros(a, bn, TUNE_REPEAT)? * a.len() as f32))
                    .collect::<Result<Vec<f32>, GpuError>>()?;
                let best = (0..times.len()).min_by(|&i, &j| times[i].total_cmp(&times[j])).unwrap_or(0);
                tuning.measured += 1;
                tuning.changed += usize::from(best != 0);
                tuning.planned_us += times[0];
                tuning.picked_us += times[best];
                step.alternatives.swap(0, best);
            }
            plan.extend(first(&step));
        }
        tuning.seconds = start.elapsed().as_secs_f64();
        Ok((plan, Some(tuning)))
    }

    /// What measuring `config`'s alternatives found, if it was captured with
    /// [`GpuOptions::tune`].
    pub fn tuning(&self, config: &SubnetConfig) -> Option<Tuning> {
        self.find(config.id()).ok().and_then(|i| self.graphs[i].tuning)
    }

    /// The launches that `cfg`'s graph runs (the plan's, if it has no graph).
    fn launches(&self, cfg: &SubnetConfig) -> Vec<Launch> {
        match self.find(cfg.id()) {
            Ok(i) => self.graphs[i].plan.clone(),
            Err(_) => self.image.plan(cfg, self.target),
        }
    }

    /// `cfg`'s BN set: its own if registered, else the supernet's.
    fn bn_set(&self, cfg: &SubnetConfig) -> &CudaSlice<f32> {
        match self.bn_sets.binary_search_by_key(&cfg.id(), |(k, _)| *k) {
            Ok(i) => &self.bn_sets[i].1,
            Err(_) => &self.bn_default,
        }
    }

    /// A graph (uploaded) of `plan`, each launch made `repeat` times in a row, reading BN from
    /// `bn`; with `host` (page-locked input and logits, and the input's length), it copies the
    /// input in first and the logits out last; the launches made `how`.
    fn record(
        &self,
        plan: &[Launch],
        bn: &CudaSlice<f32>,
        repeat: usize,
        host: Option<((*const f32, *mut f32), usize)>,
        how: Launching<'_>,
    ) -> Result<CudaGraph, GpuError> {
        let s = &self.stream;
        s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(driver("graph capture start"))?;
        let launched = self.enqueue(plan, bn, repeat, host, how);
        // End the capture even after a failed launch, so that the stream is usable again.
        let graph = s.end_capture(sys::CUgraphInstantiate_flags(0));
        launched.map_err(driver("kernel launch during capture"))?;
        let graph = graph
            .map_err(driver("graph capture"))?
            .ok_or(GpuError::Driver { what: "graph capture", error: "the capture recorded nothing".into() })?;
        graph.upload().map_err(driver("graph upload"))?;
        Ok(graph)
    }

    /// Each buffer's address as the kernels see it, reading BN from `bn`: the mapped input and
    /// logits first, where they are mapped, so that [`base`] finds them rather than the device's.
    fn bases(&self, bn: &CudaSlice<f32>) -> Vec<(Buffer, u64)> {
        let s = &self.stream;
        let ptr = |b: &CudaSlice<f32>| b.device_ptr(s).0;
        let mapped = [(Buffer::Input, self.input_mapped), (Buffer::Logits, self.logits_mapped)];
        mapped
            .into_iter()
            .filter_map(|(b, p)| p.map(|p| (b, p)))
            .chain([(Buffer::Weights, ptr(&self.weights_dev)), (Buffer::Bn, ptr(bn))])
            .chain(self.work.iter().map(|(b, slice)| (*b, ptr(slice))))
            .collect()
    }

    /// Enqueue what [`Self::record`] records.
    fn enqueue(
        &self,
        plan: &[Launch],
        bn: &CudaSlice<f32>,
        repeat: usize,
        host: Option<((*const f32, *mut f32), usize)>,
        how: Launching<'_>,
    ) -> Result<(), DriverError> {
        let s = &self.stream;
        // The raw calls below do not bind the context themselves (`fill` runs outside a capture).
        s.context().bind_to_thread()?;
        let bases = self.bases(bn);
        let base = |b: Buffer| base(&bases, b);
        if let (Some(((input, _), input_len)), None) = (host, self.input_mapped) {
            // SAFETY: `input` is `host_in`, page-locked and sized for the largest resolution, as
            // is `Buffer::Input`; `input_len` is the sub-network's.
            unsafe {
                let src = std::slice::from_raw_parts(input, input_len);
                cudarc::driver::result::memcpy_htod_async(base(Buffer::Input), src, s.cu_stream())?;
            }
        }
        match how {
            Launching::Kernels { programmatic } => {
                let mut first = true;
                for l in plan {
                    let f = &self.functions[l.kernel.id() as usize];
                    let mut slots = l.slots(base);
                    for _ in 0..repeat {
                        let how = Launched { programmatic: programmatic && !first, cooperative: false, shared: 0 };
                        // SAFETY: the slots follow the kernel's signature (gpu::Launch) and every
                        // pointer lies in a buffer that this engine keeps alive as long as any graph
                        // (gpu::tests checks the plans).
                        unsafe { launch(f, l.grid, l.block, &mut slots, s, how) }?;
                        first = false;
                    }
                }
            }
            Launching::Persistent { kernel, table } => {
                for _ in 0..repeat {
                    // SAFETY: the table is `plan`'s (as above) and lives as long as the graph
                    // (Captured); the kernel and its counters as long as the engine.
                    unsafe { self.launch_persistent(kernel, table, None) }?;
                }
            }
        }
        if let (Some(((_, logits), _)), None) = (host, self.logits_mapped) {
            // SAFETY: `logits` is `host_out`, page-locked, NUM_CLASSES long and read by the host
            // only after the stream is synchronised.
            unsafe {
                let dst = std::slice::from_raw_parts_mut(logits, NUM_CLASSES);
                cudarc::driver::result::memcpy_dtoh_async(dst, base(Buffer::Logits), s.cu_stream())?;
            }
        }
        Ok(())
    }

    /// `plan`'s table for the persistent kernel, reading BN from `bn`, uploaded.
    fn persistent_table(&self, plan: &[Launch], bn: &CudaSlice<f32>) -> Result<PersistentTable, GpuError> {
        let bases = self.bases(bn);
        let table = persistent_steps(plan, |b| base(&bases, b));
        let table = self.stream.clone_htod(&table).map_err(driver("persistent table upload"))?;
        Ok(PersistentTable { table, launches: plan.len() })
    }

    /// Launch `kernel` on `table` (`launches` of a plan), with `trace` if given, on one block per
    /// multiprocessor.
    ///
    /// # Safety
    /// `table` must be [`persistent_steps`] of a plan whose pointers lie in this engine's buffers;
    /// every buffer must outlive the launch.
    unsafe fn launch_persistent(
        &self,
        kernel: &Persistent,
        table: &PersistentTable,
        trace: Option<&CudaSlice<u64>>,
    ) -> Result<(), DriverError> {
        let s = &self.stream;
        let trace = trace.map_or(0, |t| t.device_ptr(s).0);
        let mut slots = [
            table.table.device_ptr(s).0,
            table.launches as u64,
            kernel.arrived.device_ptr(s).0,
            trace,
            self.barrier.slot(),
        ];
        let how = Launched { programmatic: false, cooperative: true, shared: kernel.shared };
        let (grid, block) = ([self.target.sms as u32, 1, 1], [PERSISTENT_THREADS, 1, 1]);
        // SAFETY: the slots follow dynofa_persistent's signature (its table, an int in the slot's
        // first bytes, its counters, its trace or null, an int); the caller vouches for the buffers; a
        // block per multiprocessor is resident, as a cooperative launch requires.
        unsafe { launch(&kernel.function, grid, block, &mut slots, s, how) }
    }

    /// Run `plan` once and wait, so that every buffer holds its activations (and split tickets are
    /// back at zero) before its launches are timed alone.
    fn fill(&self, plan: &[Launch], bn: &CudaSlice<f32>) -> Result<(), GpuError> {
        self.enqueue(plan, bn, 1, None, Launching::Kernels { programmatic: false }).map_err(driver("kernel launch"))?;
        self.stream.synchronize().map_err(driver("kernel timing"))
    }

    /// GPU time in µs per launch of a graph of `plan`, each launch made `repeat` times in a row
    /// (the median of 5 replays after one).
    fn graph_micros(&self, plan: &[Launch], bn: &CudaSlice<f32>, repeat: usize) -> Result<f32, GpuError> {
        let graph = self.record(plan, bn, repeat, None, Launching::Kernels { programmatic: self.programmatic })?;
        Ok(self.replay_ms(&graph, 1)? * 1e3 / (plan.len() * repeat) as f32)
    }

    /// GPU time in ms of one replay of `graph`: the median of 5 runs of `replays` replays (after
    /// one), over `replays`.
    fn replay_ms(&self, graph: &CudaGraph, replays: usize) -> Result<f32, GpuError> {
        let events = self.timing_events()?;
        let launch = || graph.launch().map_err(driver("graph launch"));
        launch()?;
        let times = (0..5)
            .map(|_| self.timed_ms(&events, || (0..replays).try_for_each(|_| launch())))
            .collect::<Result<Vec<f32>, GpuError>>()?;
        Ok(median(times) / replays.max(1) as f32)
    }

    /// Two events on this engine's context, to time work on its stream between them.
    fn timing_events(&self) -> Result<[CudaEvent; 2], GpuError> {
        let ctx = self.stream.context();
        let event = || ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(driver("event creation"));
        Ok([event()?, event()?])
    }

    /// GPU time in ms of what `enqueue` puts on the stream between `events`, waited for.
    fn timed_ms(
        &self,
        [start, end]: &[CudaEvent; 2],
        enqueue: impl FnOnce() -> Result<(), GpuError>,
    ) -> Result<f32, GpuError> {
        start.record(&self.stream).map_err(driver("event record"))?;
        enqueue()?;
        end.record(&self.stream).map_err(driver("event record"))?;
        self.stream.synchronize().map_err(driver("kernel timing"))?;
        start.elapsed_ms(end).map_err(driver("event timing"))
    }

    /// Each launch of `cfg`'s graph (its plan, if it has none) with its GPU time in µs, for
    /// finding where a frame's time goes and checking the plan's model ([`Launch::model_us`]):
    /// each launch alone in a graph, made `repeat` times in a row (with programmatic dependent
    /// launch if the captured graphs have it), so that the time includes what a graph node costs.
    /// Leaves the active sub-network's buffers overwritten.
    pub fn kernel_times(&mut self, cfg: &SubnetConfig, repeat: usize) -> Result<Vec<(Launch, f32)>, GpuError> {
        cfg.validate(self.weights.supernet()).map_err(EngineError::from)?;
        let plan = self.launches(cfg);
        let bn = self.bn_set(cfg);
        self.fill(&plan, bn)?;
        plan.iter().map(|l| Ok((l.clone(), self.graph_micros(std::slice::from_ref(l), bn, repeat.max(1))?))).collect()
    }

    /// GPU time in µs of `cfg`'s kernels as one graph, without the input and logits copies: what
    /// `infer` takes beyond it is the copies and the host's launch and wait. Leaves the active
    /// sub-network's buffers overwritten.
    pub fn kernels_micros(&mut self, cfg: &SubnetConfig) -> Result<f32, GpuError> {
        cfg.validate(self.weights.supernet()).map_err(EngineError::from)?;
        let plan = self.launches(cfg);
        Ok(self.graph_micros(&plan, self.bn_set(cfg), 1)? * plan.len() as f32)
    }

    /// GPU time in µs per launch of a graph of `n` launches that do nothing (one block each), with
    /// programmatic dependent launch if the captured graphs have it: the least any node of a
    /// sub-network's graph costs on this GPU.
    pub fn launch_floor(&mut self, n: usize) -> Result<f32, GpuError> {
        self.graph_micros(&[Launch::nothing()], &self.bn_default, n.max(1))
    }

    /// GPU time in µs of one barrier across a grid of one block per multiprocessor, all resident
    /// (a cooperative launch): each block's thread 0 adds 1 to a counter, then spins until every
    /// block has (an error if a block gave up waiting). That is what a persistent kernel running every layer would pay between two
    /// layers, where a graph pays a node ([`GpuEngine::launch_floor`]). The median of 5 launches
    /// of `rounds` barriers, less the median of 5 launches of none, over `rounds`. Ordered by
    /// `order`: which costs less.
    pub fn grid_barrier(&mut self, rounds: usize, order: BarrierOrder) -> Result<f32, GpuError> {
        let f = self.module.load_function(GRID_BARRIER).map_err(driver("kernel lookup"))?;
        let s = &self.stream;
        let ctx = s.context();
        // The raw launch below does not bind the context itself.
        ctx.bind_to_thread().map_err(driver("context"))?;
        // Arrivals, and whether a block gave up waiting.
        let mut count = s.alloc_zeros::<u32>(2).map_err(driver("allocation"))?;
        let events = self.timing_events()?;
        let blocks = self.target.sms as u32;
        let mut median_ms = |rounds: i32| -> Result<f32, GpuError> {
            let mut times = Vec::with_capacity(5);
            for _ in 0..5 {
                s.memset_zeros(&mut count).map_err(driver("memset"))?;
                let mut slots = [count.device_ptr(s).0, rounds as u64, order.slot()];
                let launch = || {
                    let how = Launched { programmatic: false, cooperative: true, shared: 0 };
                    // SAFETY: the slots follow the kernel's signature (a counter pointer, two ints
                    // read from their slots' first bytes), `count` outlives the synchronisation in
                    // timed_ms, and the grid (one 32-thread block per multiprocessor) fits the
                    // GPU, as a cooperative launch requires.
                    unsafe { launch(&f, [blocks, 1, 1], [32, 1, 1], &mut slots, s, how) }
                        .map_err(driver("cooperative launch"))
                };
                times.push(self.timed_ms(&events, launch)?);
                if s.clone_dtoh(&count).map_err(driver("copy"))?[1] != 0 {
                    let error = "a block gave up waiting: the grid was not all resident".to_string();
                    return Err(GpuError::Driver { what: "grid barrier", error });
                }
            }
            Ok(median(times))
        };
        let rounds = rounds.max(1);
        let none = median_ms(0)?;
        Ok((median_ms(rounds as i32)? - none) * 1e3 / rounds as f32)
    }

    /// Where the persistent kernel's time goes on `cfg` (its graph's plan, else the plan): each
    /// launch with its span and the barrier after it ([`PersistentSpan`]), the mean of `repeat`
    /// runs of the kernel with a trace, launched alone (not in the graph). Works whether or not
    /// the engine was made with [`GpuOptions::persistent`]. Leaves the active sub-network's
    /// buffers overwritten.
    pub fn persistent_trace(
        &mut self,
        cfg: &SubnetConfig,
        repeat: usize,
    ) -> Result<Vec<(Launch, PersistentSpan)>, GpuError> {
        cfg.validate(self.weights.supernet()).map_err(EngineError::from)?;
        let plan = self.launches(cfg);
        // The engine's own kernel where it has one.
        let loaded;
        let kernel = match &self.persistent {
            Some(kernel) => kernel,
            None => {
                loaded = Persistent::load(&self.module, &self.stream)?;
                &loaded
            }
        };
        let table = self.persistent_table(&plan, self.bn_set(cfg))?;
        let s = &self.stream;
        let blocks = self.target.sms;
        let trace = s.alloc_zeros::<u64>(plan.len() * blocks * 2).map_err(driver("allocation"))?;
        // The raw launch below does not bind the context itself.
        s.context().bind_to_thread().map_err(driver("context"))?;
        let mut sums = vec![(0.0, 0.0); plan.len()];
        let runs = repeat.max(1);
        for _ in 0..runs {
            // SAFETY: the table is the plan's, on this engine's buffers; all outlive the
            // synchronisation below.
            unsafe { self.launch_persistent(kernel, &table, Some(&trace)) }.map_err(driver("cooperative launch"))?;
            s.synchronize().map_err(driver("persistent kernel"))?;
            let times = s.clone_dtoh(&trace).map_err(driver("trace copy"))?;
            for (sum, span) in sums.iter_mut().zip(persistent_spans(&times, plan.len(), blocks)) {
                *sum = (sum.0 + span.launch_ns, sum.1 + span.barrier_ns);
            }
        }
        let mean = |ns: f64| ns / runs as f64;
        Ok(plan
            .into_iter()
            .zip(sums)
            .map(|(l, (a, b))| (l, PersistentSpan { launch_ns: mean(a), barrier_ns: mean(b) }))
            .collect())
    }

    /// The first half of [`InferenceEngine::infer`]: checks `input` against the active
    /// sub-network and copies it into the page-locked buffer that the graph copies to the GPU.
    /// Apart, the halves show what the host copy costs (the GPU bench times each).
    pub fn stage(&mut self, input: &[f32]) -> Result<(), GpuError> {
        let active = self.active.ok_or(EngineError::NotActive)?;
        let r = self.graphs[active].r;
        let expected = 3 * r * r;
        if input.len() != expected {
            return Err(EngineError::InputSize { found: input.len(), expected, r }.into());
        }
        // The stream is idle here (every call ends synchronised), so the host buffers are free.
        self.host_in.as_mut_slice().map_err(driver("page-locked input"))?[..expected].copy_from_slice(input);
        Ok(())
    }

    /// The second half of [`InferenceEngine::infer`]: replays the active sub-network's graph on
    /// the staged input (the last one [`GpuEngine::stage`] wrote), waits for it and copies the
    /// logits to `output`.
    pub fn run_staged(&mut self, output: &mut [f32]) -> Result<(), GpuError> {
        let active = self.active.ok_or(EngineError::NotActive)?;
        if output.len() != NUM_CLASSES {
            return Err(EngineError::OutputSize { found: output.len() }.into());
        }
        self.graphs[active].graph.launch().map_err(driver("graph launch"))?;
        self.stream.synchronize().map_err(driver("inference"))?;
        output.copy_from_slice(&self.host_out.as_slice().map_err(driver("page-locked logits"))?[..NUM_CLASSES]);
        Ok(())
    }

    /// Whether the first kernel reads the input from, and the classifier writes the logits into,
    /// mapped page-locked memory ([`GpuOptions::mapped_input`], [`GpuOptions::mapped_logits`],
    /// where the driver maps it) rather than the graph copying them.
    pub fn mapped(&self) -> (bool, bool) {
        (self.input_mapped.is_some(), self.logits_mapped.is_some())
    }

    /// What the plans are made for: the GPU's multiprocessors, and the kernels they may use.
    pub fn target(&self) -> Target {
        self.target
    }
}

/// `len` floats of page-locked host memory allocated with `flags` and, with `map`, mapped into the
/// GPU's address space, with its device address (`None` without `map`, or where the driver does
/// not map it: then the graphs copy).
///
/// # Safety
/// The memory is uninitialised: the caller writes it before anything reads it.
unsafe fn page_locked(
    ctx: &Arc<CudaContext>,
    len: usize,
    flags: u32,
    map: bool,
    what: &'static str,
) -> Result<(PinnedHostSlice<f32>, Option<u64>), GpuError> {
    let mapped = || -> Result<(PinnedHostSlice<f32>, u64), DriverError> {
        // SAFETY: the caller's.
        let mut buffer = unsafe { ctx.alloc_pinned_with_flags::<f32>(len, flags | sys::CU_MEMHOSTALLOC_DEVICEMAP) }?;
        let host = buffer.as_mut_ptr()?;
        let mut device: sys::CUdeviceptr = 0;
        // SAFETY: `host` was allocated with CU_MEMHOSTALLOC_DEVICEMAP in this context.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut device, host.cast(), 0) }.result()?;
        Ok((buffer, device))
    };
    if let Some(Ok((buffer, device))) = map.then(mapped) {
        return Ok((buffer, Some(device)));
    }
    // SAFETY: the caller's.
    let buffer = unsafe { ctx.alloc_pinned_with_flags::<f32>(len, flags) }.map_err(driver(what))?;
    Ok((buffer, None))
}

/// The median of an odd number of timings.
fn median(mut times: Vec<f32>) -> f32 {
    times.sort_by(f32::total_cmp);
    times[times.len() / 2]
}

/// How [`launch`] launches.
#[derive(Clone, Copy)]
struct Launched {
    /// With programmatic dependent launch (where this build has it).
    programmatic: bool,
    /// Cooperatively: every block resident at once, or the launch fails.
    cooperative: bool,
    /// Dynamic shared memory per block (bytes).
    shared: u32,
}

/// Launch `f` on `stream` with `grid`, `block` and the argument `slots` (cuLaunchKernel's values),
/// as `how` says.
///
/// # Safety
/// `slots` must follow `f`'s signature, its pointers valid for the launch's lifetime.
unsafe fn launch(
    f: &CudaFunction,
    grid: [u32; 3],
    block: [u32; 3],
    slots: &mut [u64],
    stream: &CudaStream,
    how: Launched,
) -> Result<(), DriverError> {
    let mut params: Vec<*mut std::ffi::c_void> = slots.iter_mut().map(|v| (v as *mut u64).cast()).collect();
    let [gx, gy, gz] = grid;
    let [bx, by, bz] = block;
    #[cfg(not(feature = "cuda-11040"))]
    if how.programmatic || how.cooperative {
        use sys::CUlaunchAttributeID::{
            CU_LAUNCH_ATTRIBUTE_COOPERATIVE, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        };
        let attribute = |id| {
            // SAFETY: a plain C struct, all zeros is a valid empty attribute; the fields are set next.
            let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
            attr.id = id;
            match id {
                CU_LAUNCH_ATTRIBUTE_COOPERATIVE => attr.value.cooperative = 1,
                _ => attr.value.programmaticStreamSerializationAllowed = 1,
            }
            attr
        };
        let mut attrs: Vec<sys::CUlaunchAttribute> = [
            (how.cooperative, CU_LAUNCH_ATTRIBUTE_COOPERATIVE),
            (how.programmatic, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION),
        ]
        .into_iter()
        .filter(|&(on, _)| on)
        .map(|(_, id)| attribute(id))
        .collect();
        let config = sys::CUlaunchConfig {
            gridDimX: gx,
            gridDimY: gy,
            gridDimZ: gz,
            blockDimX: bx,
            blockDimY: by,
            blockDimZ: bz,
            sharedMemBytes: how.shared,
            hStream: stream.cu_stream(),
            attrs: attrs.as_mut_ptr(),
            numAttrs: attrs.len() as u32,
        };
        // SAFETY: `config` and `attrs` outlive the call; the caller vouches for `params`.
        return unsafe { sys::cuLaunchKernelEx(&config, f.cu_function(), params.as_mut_ptr(), std::ptr::null_mut()) }
            .result();
    }
    // CUDA 11.4 has no programmatic dependent launch.
    #[cfg(feature = "cuda-11040")]
    let _ = how.programmatic;
    #[cfg(feature = "cuda-11040")]
    if how.cooperative {
        // SAFETY: the caller vouches for `params`.
        return unsafe {
            sys::cuLaunchCooperativeKernel(
                f.cu_function(),
                gx,
                gy,
                gz,
                bx,
                by,
                bz,
                how.shared,
                stream.cu_stream(),
                params.as_mut_ptr(),
            )
        }
        .result();
    }
    // SAFETY: the caller vouches for `params`.
    unsafe {
        cudarc::driver::result::launch_kernel(
            f.cu_function(),
            (gx, gy, gz),
            (bx, by, bz),
            how.shared,
            stream.cu_stream(),
            &mut params,
        )
    }
}

/// `b`'s address in `bases` ([`GpuEngine::bases`]): its first entry.
fn base(bases: &[(Buffer, u64)], b: Buffer) -> u64 {
    bases.iter().find(|(k, _)| *k == b).map_or(0, |(_, p)| *p)
}

impl ErrorType for GpuEngine {
    type Error = GpuError;
}

impl InferenceEngine for GpuEngine {
    fn activate(&mut self, config: &SubnetConfig) -> Result<(), GpuError> {
        match self.find(config.id()) {
            Ok(i) => {
                self.active = Some(i);
                Ok(())
            }
            Err(_) => {
                config.validate(self.weights.supernet()).map_err(EngineError::from)?;
                Err(GpuError::NotPrepared(config.id()))
            }
        }
    }

    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), GpuError> {
        self.stage(input)?;
        self.run_staged(output)
    }
}
