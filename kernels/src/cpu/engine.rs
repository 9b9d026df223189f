//! [`CpuEngine`]: runs any sub-network of the supernet in place on the shared weights.
//!
//! Feature maps are channel-blocked ([`Layout::blocked`]): the depthwise kernel's loads are then
//! constant offsets and a GEMM tile's rows one contiguous store. One inference is one region of
//! the thread team: every thread walks the plan, computes its share of each layer (rows of the
//! feature map, or output channels where the map is small) and meets the others at a barrier
//! before a layer reads what the previous wrote.

use core::ops::Range;

use dynofa_core::arch::{NUM_BLOCKS, NUM_CLASSES};
use dynofa_core::hal::{ErrorKind, ErrorType, InferenceEngine};
use dynofa_core::{BlockShape, ConfigError, SubnetConfig, SubnetId, Supernet};

use super::depthwise::{DepthwiseLayer, depthwise};
use super::pointwise::{Epilogue, PackedB, pointwise};
use super::simd::Isa;
use super::team::{Ctx, Team};
use super::vector::{column_means, matvec};
use super::{Act, CHUNK, Layout, stem_im2col};
use crate::statedict::{BN_FINAL, BN_FIRST_DW, BN_FIRST_PL, BN_STEM, BlockPart, bn_block};
use crate::weights::{BnTable, SupernetWeights};

/// Why the engine refused a call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The config is not a sub-network of this supernet.
    #[error("invalid sub-network for this supernet: {0}")]
    Config(#[from] ConfigError),
    /// The input buffer does not match the active resolution.
    #[error("input has {found} values; the active sub-network takes f32 [1, 3, {r}, {r}] ({expected} values)")]
    InputSize {
        /// Values given.
        found: usize,
        /// Values required.
        expected: usize,
        /// The active resolution.
        r: usize,
    },
    /// The output buffer is not `[1, 1000]`.
    #[error("output has {found} values; logits are f32 [1, 1000]")]
    OutputSize {
        /// Values given.
        found: usize,
    },
    /// [`InferenceEngine::infer`] before any [`InferenceEngine::activate`].
    #[error("no sub-network is active: call activate first")]
    NotActive,
}

impl dynofa_core::hal::Error for EngineError {
    fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NotActive => ErrorKind::NotPrepared,
            _ => ErrorKind::InvalidInput,
        }
    }
}

/// An op of a frame, as [`CpuEngine::infer_marked`] reports its end (OFA's latency-table names:
/// `Conv`, `expanded_conv` for `blocks.0` and each block, `Conv_1`, `AvgPool2D`, `Conv_2`, `Logits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `first_conv`.
    Stem,
    /// `blocks.0`.
    FirstBlock,
    /// Elastic block `blocks.N` (1..=20).
    Block(usize),
    /// `final_expand_layer`.
    FinalExpand,
    /// Global average pooling.
    Pool,
    /// `feature_mix_layer`.
    FeatureMix,
    /// The classifier.
    Classifier,
}

/// What `activate` prepares: the blocks to run and the BN statistics to use. No allocation.
#[derive(Debug, Clone, Copy)]
struct Plan {
    r: usize,
    blocks: [BlockShape; NUM_BLOCKS],
    count: usize,
    id: SubnetId,
    /// Index into the registered BN sets, or `None` for the supernet's statistics.
    bn: Option<usize>,
}

/// A work buffer shared by the team. Within one phase (between two barriers) each thread writes
/// only its own part, and nobody reads what is being written; see the SAFETY notes at each use.
#[derive(Clone, Copy)]
struct Buf {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: a Buf is only a handle; the phase discipline above makes every access race-free.
unsafe impl Send for Buf {}
// SAFETY: as above.
unsafe impl Sync for Buf {}

/// Extra floats allocated so that a 64-byte aligned start exists.
const ALIGN_SLACK: usize = 15;

/// A zeroed vector with room for `len` floats from a 64-byte boundary (see [`Buf::aligned`]).
fn aligned_vec(len: usize) -> Vec<f32> {
    vec![0.0; len + ALIGN_SLACK]
}

impl Buf {
    fn new(v: &mut [f32]) -> Self {
        Buf { ptr: v.as_mut_ptr(), len: v.len() }
    }

    /// The 64-byte aligned part of a vector made by [`aligned_vec`]: vector stores of 16
    /// channels then never split a cache line.
    fn aligned(v: &mut [f32]) -> Self {
        let skip = v.as_ptr().align_offset(64).min(ALIGN_SLACK);
        let len = v.len() - ALIGN_SLACK;
        Buf::new(&mut v[skip..skip + len])
    }

    /// The first `len` values, for reading.
    ///
    /// # Safety
    /// No thread writes them while the slice lives.
    unsafe fn read(&self, range: Range<usize>) -> &[f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds; the caller rules out concurrent writes.
        unsafe { core::slice::from_raw_parts(self.ptr.add(range.start), range.len()) }
    }

    /// A range for writing.
    ///
    /// # Safety
    /// No other thread reads or writes it while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn write(&self, range: Range<usize>) -> &mut [f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds; the caller guarantees exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

/// Work buffers, sized at construction for the largest sub-network.
#[derive(Debug)]
struct Buffers {
    /// Block input and output, swapped after each block.
    io: [Vec<f32>; 2],
    /// Expanded activations (and the stem's im2col, the final expansion).
    expanded: Vec<f32>,
    /// Depthwise output.
    dw: Vec<f32>,
    /// SE pool sums, `[threads][mid_max]`.
    pool: Vec<f32>,
    /// SE pooled means, one copy per thread.
    means: Vec<f32>,
    se_hidden: Vec<f32>,
    se_gate: Vec<f32>,
    head_pool: Vec<f32>,
    features: Vec<f32>,
}

impl Buffers {
    fn new(net: &Supernet, threads: usize) -> Self {
        let max = SubnetConfig::uniform(7, 6, 4, dynofa_core::arch::MAX_RESOLUTION);
        let s0 = Supernet::stem_out(max.r as usize).pow(2);
        let fs = Supernet::final_size(max.r as usize).pow(2);
        let blocks = || net.blocks(&max);
        // A blocked map of `c` channels takes whole chunks: the SE gating addresses a last half
        // chunk by its full stride.
        let map = |pixels: usize, c: usize| pixels * c.next_multiple_of(CHUNK);
        let io = blocks()
            .map(|b| map(b.in_size.pow(2), b.in_ch).max(map(b.out_size.pow(2), b.out_ch)))
            .fold(map(s0, net.stem.max(net.first_block)), usize::max);
        let expanded =
            blocks().map(|b| map(b.in_size.pow(2), b.mid)).fold((s0 * 27).max(map(fs, net.final_expand)), usize::max);
        let dw = blocks().map(|b| map(b.out_size.pow(2), b.mid)).fold(map(s0, net.stem), usize::max);
        let mid = blocks().map(|b| b.mid).max().unwrap_or(0);
        let se = blocks().filter_map(|b| b.se_mid).max().unwrap_or(0);
        Buffers {
            io: [aligned_vec(io), aligned_vec(io)],
            expanded: aligned_vec(expanded),
            dw: aligned_vec(dw),
            pool: vec![0.0; threads * mid],
            means: vec![0.0; threads * mid],
            se_hidden: vec![0.0; se],
            se_gate: vec![0.0; mid],
            head_pool: vec![0.0; net.final_expand],
            features: vec![0.0; net.feature_mix],
        }
    }
}

/// The CPU inference engine: owns the supernet's weights and runs whichever sub-network is
/// active, directly on them. [`InferenceEngine::activate`] and [`InferenceEngine::infer`] never
/// allocate and never copy a weight.
#[derive(Debug)]
pub struct CpuEngine {
    weights: SupernetWeights,
    bn_sets: Vec<(SubnetId, BnTable)>,
    plan: Option<Plan>,
    bufs: Buffers,
    team: Team,
    isa: Isa,
}

impl CpuEngine {
    /// An engine on `weights` with one thread per available core.
    pub fn new(weights: SupernetWeights) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(weights, cores)
    }

    /// An engine on `weights` with `threads` threads (the caller's and `threads - 1` workers).
    pub fn with_threads(weights: SupernetWeights, threads: usize) -> Self {
        Self::with_isa(weights, threads, Isa::detect())
    }

    /// An engine that uses instruction set `isa`, which must be one of [`Isa::available`].
    pub fn with_isa(weights: SupernetWeights, threads: usize, isa: Isa) -> Self {
        assert!(Isa::available().contains(&isa), "{isa:?} is not supported by this CPU");
        let team = Team::new(threads);
        let bufs = Buffers::new(weights.supernet(), team.threads());
        CpuEngine { weights, bn_sets: Vec::new(), plan: None, bufs, team, isa }
    }

    /// The weights.
    pub fn weights(&self) -> &SupernetWeights {
        &self.weights
    }

    /// Threads the engine runs on.
    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Use `table` (from [`SupernetWeights::load_bn_statistics`]) whenever `config` is active.
    /// Allocates: call it at start-up, not between frames.
    pub fn register_bn(&mut self, config: &SubnetConfig, table: BnTable) -> Result<(), EngineError> {
        config.validate(self.weights.supernet())?;
        let id = config.id();
        match self.bn_sets.binary_search_by_key(&id, |(k, _)| *k) {
            Ok(i) => self.bn_sets[i].1 = table,
            Err(i) => self.bn_sets.insert(i, (id, table)),
        }
        if let Some(plan) = &mut self.plan {
            // Indices may have moved: look the active set up again.
            plan.bn = find_bn(&self.bn_sets, plan.id);
        }
        Ok(())
    }
}

/// The index of the BN set registered for `id`.
fn find_bn(sets: &[(SubnetId, BnTable)], id: SubnetId) -> Option<usize> {
    sets.binary_search_by_key(&id, |(k, _)| *k).ok()
}

/// What one inference reads: the weights, the BN sets and the instruction set.
struct Model<'a> {
    weights: &'a SupernetWeights,
    bn_sets: &'a [(SubnetId, BnTable)],
    isa: Isa,
}

impl Model<'_> {
    /// One frame; `mark` hears of each op's end (but the classifier's) on thread 0, after the
    /// barrier that completes it.
    fn forward<M: Fn(Layer) + Sync + ?Sized>(
        &self,
        ctx: &Ctx<'_>,
        plan: &Plan,
        input: &[f32],
        bufs: &Ptrs,
        out: Buf,
        mark: &M,
    ) {
        let done = |layer| {
            if ctx.tid == 0 {
                mark(layer)
            }
        };
        let w = self.weights;
        let net = w.supernet();
        let bn = plan.bn.map_or(&w.bn_table, |i| &self.bn_sets[i].1);
        let bn_of = |index: usize| {
            let r = w.bn_range(index);
            (&bn.scale[r.clone()], &bn.shift[r])
        };
        let isa = self.isa;
        let r = plan.r;
        let s0 = Supernet::stem_out(r);
        let (mut x, mut y) = (bufs.io[0], bufs.io[1]);

        // first_conv: im2col of this thread's pixels, then a GEMM over the same rows (no barrier).
        let m = s0 * s0;
        let rows = ctx.share(m, 8);
        // SAFETY: each thread writes the im2col rows of its own pixels.
        stem_im2col(input, r, rows.clone(), unsafe { bufs.expanded.write(rows.start * 27..rows.end * 27) });
        let (scale, shift) = bn_of(BN_STEM);
        let ep = Epilogue { scale, shift, act: Act::HSwish, residual: None };
        // SAFETY: the rows just written by this thread; output rows are this thread's.
        unsafe {
            let a = bufs.expanded.read(rows.start * 27..rows.end * 27);
            let (n, panels) = (rows.len(), 0..PackedB::panels_for(net.stem));
            let out = x.ptr.add(rows.start * CHUNK);
            pointwise(isa, a, Layout::nhwc(27), n, 27, &w.stem, net.stem, 0..n, panels, &ep, out, Layout::blocked(m));
        }
        ctx.sync();
        done(Layer::Stem);

        // blocks.0: depthwise 3x3 + ReLU, projection with residual.
        let first = BlockShape {
            index: 0,
            unit: 0,
            in_ch: net.stem,
            mid: net.stem,
            out_ch: net.first_block,
            se_mid: None,
            kernel: 3,
            stride: 1,
            act: dynofa_core::Activation::Relu,
            residual: net.stem == net.first_block,
            in_size: s0,
            out_size: s0,
        };
        self.depthwise_phase(ctx, &first, &w.first_dw, net.stem, bn_of(BN_FIRST_DW), x, bufs.dw, bufs);
        self.project_phase(ctx, &first, &w.first_pw, bn_of(BN_FIRST_PL), x, bufs.dw, y);
        core::mem::swap(&mut x, &mut y);
        done(Layer::FirstBlock);

        for b in &plan.blocks[..plan.count] {
            let bw = &w.blocks[b.index - 1];
            let [bn_e, bn_d, bn_p] =
                [BlockPart::Expand, BlockPart::Depthwise, BlockPart::Project].map(|p| bn_block(b.index, p));
            let (scale, shift) = bn_of(bn_e);
            let ep = Epilogue { scale, shift, act: b.act.into(), residual: None };
            self.gemm_phase(ctx, x, b.in_size.pow(2), b.in_ch, &bw.expand, b.mid, &ep, bufs.expanded);
            self.depthwise_phase(ctx, b, bw.taps(b.kernel), bw.mid_max, bn_of(bn_d), bufs.expanded, bufs.dw, bufs);
            self.project_phase(ctx, b, &bw.project, bn_of(bn_p), x, bufs.dw, y);
            core::mem::swap(&mut x, &mut y);
            done(Layer::Block(b.index));
        }

        // final_expand_layer, global average pool, feature_mix_layer, classifier.
        let fs = Supernet::final_size(r).pow(2);
        let c5 = net.unit_out[4];
        let (scale, shift) = bn_of(BN_FINAL);
        let ep = Epilogue { scale, shift, act: Act::HSwish, residual: None };
        self.gemm_phase(ctx, x, fs, c5, &w.final_expand, net.final_expand, &ep, bufs.expanded);
        done(Layer::FinalExpand);
        let cols = ctx.share(net.final_expand, CHUNK);
        // SAFETY: the expansion is complete (barrier in gemm_phase); each thread writes its columns.
        unsafe {
            let map = bufs.expanded.read(0..Layout::blocked(fs).len(fs, net.final_expand));
            column_means(map, fs, Layout::blocked(fs), cols, bufs.head_pool.ptr)
        };
        ctx.sync();
        done(Layer::Pool);
        let (cf, cm) = (net.final_expand, net.feature_mix);
        // SAFETY: pooled values are complete; each thread writes its own features, then its logits.
        unsafe {
            let pooled = bufs.head_pool.read(0..cf);
            matvec(isa, &w.feature_mix, cf, pooled, None, Act::HSwish, ctx.share(cm, 8), bufs.features.ptr);
            ctx.sync();
            done(Layer::FeatureMix);
            let features = bufs.features.read(0..cm);
            let bias = Some(&w.classifier_bias[..]);
            matvec(isa, &w.classifier, cm, features, bias, Act::Identity, ctx.share(NUM_CLASSES, 8), out.ptr);
        }
    }

    /// A pointwise convolution `a [m x k] -> out [m x n]` (both blocked), split by rows when there
    /// are enough of them for every thread, else by output channels; ends with a barrier.
    fn gemm_phase(
        &self,
        ctx: &Ctx<'_>,
        a: Buf,
        m: usize,
        k: usize,
        b: &PackedB,
        n: usize,
        ep: &Epilogue<'_>,
        out: Buf,
    ) {
        let (rows, panels) = if m >= 32 * ctx.threads {
            (ctx.share(m, 8), 0..PackedB::panels_for(n))
        } else {
            (0..m, ctx.share(PackedB::panels_for(n), 1))
        };
        let l = Layout::blocked(m);
        assert!(out.len >= l.len(m, n));
        // SAFETY: `a` (and the residual) were completed before the last barrier and nobody writes
        // them now; each thread writes only its rows or panels of `out`.
        unsafe { pointwise(self.isa, a.read(0..l.len(m, k)), l, m, k, b, n, rows, panels, ep, out.ptr, l) };
        ctx.sync();
    }

    /// Depthwise conv (+ BN + activation) of `input` into `out`; with SE, also the squeeze and
    /// excite FCs and the channel gating of `out`. Ends with a barrier.
    fn depthwise_phase(
        &self,
        ctx: &Ctx<'_>,
        b: &BlockShape,
        taps: &[f32],
        ldw: usize,
        (scale, shift): (&[f32], &[f32]),
        input: Buf,
        out: Buf,
        bufs: &Ptrs,
    ) {
        let c = b.mid;
        let layer = DepthwiseLayer {
            // SAFETY: completed before the last barrier, read-only in this phase.
            input: unsafe { input.read(0..Layout::blocked(b.in_size.pow(2)).len(b.in_size.pow(2), c)) },
            size: b.in_size,
            c,
            weights: taps,
            ldw,
            k: b.kernel,
            stride: b.stride,
            out_size: b.out_size,
            scale,
            shift,
            act: b.act.into(),
        };
        let (rows, chans) = if b.out_size >= 4 * ctx.threads {
            (ctx.share(b.out_size, 1), 0..c)
        } else {
            (0..b.out_size, ctx.share(c, CHUNK))
        };
        // Per-thread rows of the pool sums and means.
        let stride = bufs.se_gate.len;
        let mine = ctx.tid * stride..ctx.tid * stride + c;
        // SAFETY: each thread has its own pool row.
        let mut pool = b.se_mid.map(|_| unsafe { bufs.pool.write(mine.clone()) });
        if let Some(p) = pool.as_deref_mut() {
            p.fill(0.0);
        }
        let pixels = b.out_size.pow(2);
        assert!(out.len >= Layout::blocked(pixels).len(pixels, c));
        // SAFETY: each thread writes only its rows or channels of `out`.
        unsafe { depthwise(self.isa, &layer, rows, chans, out.ptr, pool) };
        ctx.sync();
        let Some(se_mid) = b.se_mid else { return };
        let se = self.weights.blocks[b.index - 1].se.as_ref().expect("SE blocks have SE weights");
        let hw = b.out_size.pow(2) as f32;
        // SAFETY: pool sums are complete; each thread writes its own copy of the means, then its
        // share of the hidden units, then (after a barrier) its share of the gate.
        unsafe {
            let means = bufs.means.write(mine);
            means.fill(0.0);
            for t in 0..ctx.threads {
                for (m, s) in means.iter_mut().zip(bufs.pool.read(t * stride..t * stride + c)) {
                    *m += s;
                }
            }
            means.iter_mut().for_each(|m| *m /= hw);
            let means = &*means;
            let bias = Some(&se.reduce_bias[..]);
            matvec(self.isa, &se.reduce, ldw, means, bias, Act::Relu, ctx.share(se_mid, 8), bufs.se_hidden.ptr);
            ctx.sync();
            let hidden = bufs.se_hidden.read(0..se_mid);
            let bias = Some(&se.expand_bias[..]);
            matvec(self.isa, &se.expand, se.se_max, hidden, bias, Act::HSigmoid, ctx.share(c, 8), bufs.se_gate.ptr);
            ctx.sync();
            let gate = bufs.se_gate.read(0..c);
            let mine = ctx.share(pixels, 1);
            let l = Layout::blocked(pixels);
            for (q, gate) in gate.chunks(CHUNK).enumerate() {
                let plane = out.write(l.at(mine.start, q * CHUNK)..l.at(mine.end, q * CHUNK));
                for px in plane.chunks_exact_mut(CHUNK) {
                    px.iter_mut().zip(gate).for_each(|(v, g)| *v *= g);
                }
            }
        }
        ctx.sync();
    }

    /// The projection (+ BN, + residual) of `mid` into `out`; ends with a barrier.
    fn project_phase(
        &self,
        ctx: &Ctx<'_>,
        b: &BlockShape,
        wts: &PackedB,
        (scale, shift): (&[f32], &[f32]),
        x: Buf,
        mid: Buf,
        out: Buf,
    ) {
        let m = b.out_size.pow(2);
        // SAFETY: the block input is read-only until the block ends.
        let residual = b.residual.then(|| unsafe { x.read(0..Layout::blocked(m).len(m, b.out_ch)) });
        let ep = Epilogue { scale, shift, act: Act::Identity, residual };
        self.gemm_phase(ctx, mid, m, b.mid, wts, b.out_ch, &ep, out);
    }
}

/// Raw handles of all work buffers for one inference.
struct Ptrs {
    io: [Buf; 2],
    expanded: Buf,
    dw: Buf,
    pool: Buf,
    means: Buf,
    se_hidden: Buf,
    se_gate: Buf,
    head_pool: Buf,
    features: Buf,
}

impl Ptrs {
    fn new(b: &mut Buffers) -> Self {
        let [io0, io1] = &mut b.io;
        Ptrs {
            io: [Buf::aligned(io0), Buf::aligned(io1)],
            expanded: Buf::aligned(&mut b.expanded),
            dw: Buf::aligned(&mut b.dw),
            pool: Buf::new(&mut b.pool),
            means: Buf::new(&mut b.means),
            se_hidden: Buf::new(&mut b.se_hidden),
            se_gate: Buf::new(&mut b.se_gate),
            head_pool: Buf::new(&mut b.head_pool),
            features: Buf::new(&mut b.features),
        }
    }
}

impl ErrorType for CpuEngine {
    type Error = EngineError;
}

impl InferenceEngine for CpuEngine {
    fn activate(&mut self, config: &SubnetConfig) -> Result<(), EngineError> {
        let net = *self.weights.supernet();
        config.validate(&net)?;
        let mut blocks = self.plan.map_or_else(|| [FILLER; NUM_BLOCKS], |p| p.blocks);
        let mut count = 0;
        for (slot, b) in blocks.iter_mut().zip(net.blocks(config)) {
            *slot = b;
            count += 1;
        }
        let id = config.id();
        let bn = find_bn(&self.bn_sets, id);
        self.plan = Some(Plan { r: config.r as usize, blocks, count, id, bn });
        Ok(())
    }

    fn infer(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), EngineError> {
        // A no-op marker: monomorphised away, plain frames pay nothing for the marks.
        self.run(input, output, &|_| {})
    }
}

impl CpuEngine {
    /// [`InferenceEngine::infer`] that calls `mark` as each op of the frame ends, in order (for
    /// per-op profiling). `mark` runs on the calling thread while the others go on.
    pub fn infer_marked(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        mark: &(dyn Fn(Layer) + Sync),
    ) -> Result<(), EngineError> {
        self.run(input, output, mark)
    }

    fn run<M: Fn(Layer) + Sync + ?Sized>(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        mark: &M,
    ) -> Result<(), EngineError> {
        let plan = self.plan.ok_or(EngineError::NotActive)?;
        let expected = 3 * plan.r * plan.r;
        if input.len() != expected {
            return Err(EngineError::InputSize { found: input.len(), expected, r: plan.r });
        }
        if output.len() != NUM_CLASSES {
            return Err(EngineError::OutputSize { found: output.len() });
        }
        let CpuEngine { weights, bn_sets, bufs, team, isa, .. } = self;
        let model = Model { weights, bn_sets, isa: *isa };
        let bufs = Ptrs::new(bufs);
        let out = Buf::new(output);
        team.run_adaptive(&|ctx| model.forward(ctx, &plan, input, &bufs, out, mark));
        mark(Layer::Classifier);
        Ok(())
    }
}

/// A placeholder shape for the unused tail of a plan.
const FILLER: BlockShape = BlockShape {
    index: 1,
    unit: 0,
    in_ch: 0,
    mid: 0,
    out_ch: 0,
    se_mid: None,
    kernel: 3,
    stride: 1,
    act: dynofa_core::Activation::Relu,
    residual: false,
    in_size: 0,
    out_size: 0,
};
