//! What the GPU engine runs, independent of any CUDA library: the CUDA C source
//! (`kernels/cuda/dynofa.cu`, with the tile sizes prepended), the supernet's weights laid out as one
//! device image, and the launch plan of a sub-network (kernel, grid, block, arguments).
//!
//! `dynofa-hal-jetson`'s GPU engine uploads the image once and captures each plan into a CUDA graph;
//! `tests/gpu_emulated.rs` runs the same plans through the same kernels compiled for the host by g++
//! (`kernels/cuda/emulate.h`). Arguments follow `cuLaunchKernel`'s convention: one 8-byte slot per
//! argument, passed as an array of pointers to the slots.

use std::fmt::Write as _;

use dynofa_core::arch::{MAX_RESOLUTION, NUM_CLASSES};
use dynofa_core::{Activation, BlockShape, SubnetConfig, Supernet};

use crate::cpu::pointwise::PackedB;
use crate::statedict::{BN_FINAL, BN_FIRST_DW, BN_FIRST_PL, BN_STEM, BlockPart, NUM_BN, bn_block};
use crate::weights::{BnTable, SupernetWeights};

/// The kernels, as CUDA C.
const KERNELS: &str = include_str!("../cuda/dynofa.cu");
/// The host emulation of CUDA for the kernels (`kernels/cuda/emulate.h`; see its header).
pub const EMULATE_H: &str = include_str!("../cuda/emulate.h");
/// A kernel of the source that no plan launches: barriers across the GPU, timed by the engine to
/// weigh a persistent kernel against graph nodes (`GpuEngine::grid_barrier`).
pub const GRID_BARRIER: &str = "dynofa_grid_barrier";
/// The kernel that runs every launch of a plan in one cooperative launch, a barrier across the GPU
/// between launches ([`persistent_steps`] writes its table; `GpuOptions::persistent`).
pub const PERSISTENT: &str = "dynofa_persistent";
/// Threads of each of [`PERSISTENT`]'s blocks: the largest block of any launch (the warps
/// kernels' 16 warps).
pub const PERSISTENT_THREADS: u32 = 32 * PWW_WARPS as u32;
/// How the barrier across the GPU between [`PERSISTENT`]'s launches (and [`GRID_BARRIER`]'s) is
/// ordered: fences around a plain atomic add and poll, or the add and the poll themselves as
/// release and acquire at GPU scope (sm_70 and newer; fences on older GPUs). `GpuEngine::grid_barrier`
/// times both: on an H100 and an H200 (11th session) release/acquire took 1.30 µs per barrier
/// across 132 blocks against 1.53 to 1.57 µs, and the persistent kernel's frames 4 to 7 % less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BarrierOrder {
    /// `__threadfence` before the add and after the poll (the first that was built).
    Fences,
    /// `red.release.gpu` and `ld.acquire.gpu`: the faster where measured.
    #[default]
    ReleaseAcquire,
}

impl BarrierOrder {
    /// The kernels' `release_acquire` argument (an argument slot).
    pub fn slot(self) -> u64 {
        u64::from(self == BarrierOrder::ReleaseAcquire)
    }
}

/// Shared memory that one launch block of [`PERSISTENT`] may use (bytes): the static limit that a
/// graph's kernels have, which every kernel's fits (the source checks).
pub const PERSISTENT_BODY_SHARED: u32 = 48 * 1024;
/// Dynamic shared memory that [`PERSISTENT`] asks for (bytes): room for two launch blocks of 256
/// threads with the most shared memory, or four of 128 threads (pointwise tiles); a block runs as
/// many of a launch's blocks at once as fit its threads and this.
pub const PERSISTENT_SHARED: u32 = 2 * PERSISTENT_BODY_SHARED;
/// The most launches that [`PERSISTENT`] runs: its table is copied into shared memory (static, 192
/// bytes a launch), where a launch's record is then a shared load rather than a round trip to L2.
/// The longest plan of any sub-network has 90 (tested).
pub const PERSISTENT_MAX_LAUNCHES: usize = 96;

/// The dynamic shared memory to launch [`PERSISTENT`] with where a block may have `available`
/// bytes of it (the GPU's `CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN` less the
/// kernel's static shared memory): [`PERSISTENT_SHARED`] or what there is; `None` if that is less
/// than [`PERSISTENT_BODY_SHARED`].
pub fn persistent_shared(available: u32) -> Option<u32> {
    let room = available.min(PERSISTENT_SHARED);
    (room >= PERSISTENT_BODY_SHARED).then_some(room)
}

/// Argument slots of a [`PERSISTENT`] step: the most arguments of any kernel.
const PERSISTENT_SLOTS: usize = 20;
/// 8-byte words of a [`PERSISTENT`] step: the kernel, grid and block (8 `u32`), then the slots.
pub const PERSISTENT_STEP_WORDS: usize = 4 + PERSISTENT_SLOTS;

// Argument slots hold i32 and f32 in their first bytes, where the kernels read them.
const _: () = assert!(cfg!(target_endian = "little"), "argument slots assume a little-endian target");

/// Input channels per step of both pointwise kernels.
const PW_BK: u32 = 16;

/// A pointwise kernel's tiling: `bm` pixels x `bn` output channels per block, `tm` x `tn` per
/// thread, and what the plan assumes about its speed (see [`PwTile::micros`]).
struct PwTile {
    kernel: Kernel,
    bm: u32,
    bn: u32,
    tm: u32,
    tn: u32,
    /// MACs per µs of one block alone on a multiprocessor.
    block_rate: f64,
    /// MACs per µs of a multiprocessor full of such blocks.
    sm_rate: f64,
}

/// Large tiles: layers with many pixels.
const PW_LARGE: PwTile =
    PwTile { kernel: Kernel::Pointwise, bm: 64, bn: 64, tm: 4, tn: 4, block_rate: 40e3, sm_rate: 60e3 };
/// Small tiles: many blocks for layers with few pixels, usually with k split over blocks.
const PW_SMALL: PwTile =
    PwTile { kernel: Kernel::PointwiseSmall, bm: 16, bn: 32, tm: 2, tn: 2, block_rate: 25e3, sm_rate: 40e3 };
/// Groups of threads of a [`Kernel::PointwiseKSplit`] block (each the small tiling's 128 threads):
/// the most, what its model rates; [`PWK_FEW`], offered to measurement only, where the tiles
/// outnumber the multiprocessors: its 512-thread bound caps a thread at 128 registers, so two
/// blocks of two groups fit a multiprocessor's 64K, where one of [`PWK_KS`] groups fills them.
pub const PWK_KS: u32 = 4;
pub const PWK_FEW: u32 = 2;
/// The most groups of 4 warps of a [`Kernel::PointwiseMma`] block (its 16 x 32 tile's k split 8
/// ways); measurement also weighs one group.
pub const PWM_GROUPS: u32 = 2;
/// µs per k step of a [`Kernel::PointwiseKSplit`] group: fitted to the 16 distinct launches that
/// measurement picked on the 11th session's H200 (2 steps: 2.99 to 3.38 µs, mean 3.17; 3 steps:
/// 3.87 to 4.33, mean 4.07; `LAUNCH_US` beside), all of at most 108 blocks on 132
/// multiprocessors (`docs/data/gpu-launches-h200.csv`). Where a launch had more blocks than
/// multiprocessors (a block's 512 threads of 93 registers leave no room for a second), measurement
/// kept the small tiles; docs/gpu.md, "Tuning".
const PWK_STEP_US: f64 = 0.9;

/// The plan's estimate (µs) of an `m x k x n` product in [`Kernel::PointwiseKSplit`] blocks of
/// the whole k on `sms` multiprocessors: [`LAUNCH_US`] and a group's steps, or `None` beyond the
/// measured launches (more blocks than multiprocessors), where only measurement rates it.
fn ksplit_micros(m: usize, k: usize, n: usize, sms: usize) -> Option<f64> {
    let steps = k.div_ceil(PWK_KS as usize).div_ceil(PW_BK as usize);
    (PW_SMALL.tiles(m, n) <= sms).then_some(LAUNCH_US + PWK_STEP_US * steps as f64)
}
/// Most slices a split k is cut into.
const MAX_SPLITS: usize = 32;
/// Floats of [`Buffer::Split`] (every slice of a split launch) and counters of [`Buffer::Tickets`]
/// (one per output tile of a split launch): the plan splits no launch that would need more.
const SPLIT_FLOATS: usize = 1 << 18;
const TICKETS: usize = 1024;
/// Cost of a split k beyond its blocks (µs): partial tiles through L2, a fence and a ticket, then
/// per slice the last block's reads. Fitted, with [`LAUNCH_US`], to the 8th session's H100 run
/// (`docs/data/gpu-launches-h100.csv`; docs/gpu.md "Tuning").
const SPLIT_US: f64 = 2.7;
const SPLIT_US_PER_SLICE: f64 = 0.05;
/// What every pointwise launch costs beyond its blocks' work (µs): the graph node, the wait for
/// the previous kernel, one round trip for its first inputs. The models include it so that
/// [`Launch::model_us`] estimates the measured time, and the warps kernels' rounds compare with
/// the tilings' rates.
const LAUNCH_US: f64 = 1.4;
/// The most input channels (k) of a gated projection slice, whose gates the pointwise kernels keep
/// in shared memory: w1.2's widest block.
const PW_MAX_GATE: usize = 1152;

impl PwTile {
    fn threads(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Output tiles of an `m x n` product.
    fn tiles(&self, m: usize, n: usize) -> usize {
        m.div_ceil(self.bm as usize) * n.div_ceil(self.bn as usize)
    }

    /// The grid of an `m x k x n` product in slices of `kc` input channels: output tiles across
    /// x (channels) and y (pixels), slices across z.
    fn grid(&self, m: usize, k: usize, n: usize, kc: usize) -> [usize; 3] {
        [n.div_ceil(self.bn as usize), m.div_ceil(self.bm as usize), k.div_ceil(kc)]
    }

    /// The plan's estimate (µs) of an `m x k x n` product on `sms` multiprocessors in slices of
    /// `kc` input channels: the busiest multiprocessor's blocks at `sm_rate`, yet no block faster
    /// than `block_rate`, plus the split's own cost. The rates are estimates for an H100-class
    /// multiprocessor; `GpuEngine::kernel_times` measures what each launch really takes.
    fn micros(&self, m: usize, k: usize, n: usize, kc: usize, sms: usize) -> f64 {
        let slices = k.div_ceil(kc);
        let blocks = self.tiles(m, n) * slices;
        let per_block = (self.bm * self.bn) as f64 * kc as f64;
        let busiest = blocks.div_ceil(sms.max(1)) as f64 * per_block / self.sm_rate;
        let split = if slices > 1 { SPLIT_US + SPLIT_US_PER_SLICE * slices as f64 } else { 0.0 };
        LAUNCH_US + busiest.max(per_block / self.block_rate) + split
    }
}

/// A shape of the latency-shaped pointwise kernels: pixels per block (32 output channels each),
/// the most input channels per warp, which each lane holds in registers (a block splits k over up
/// to [`PWW_WARPS`] warps), and its model (see [`WarpsTile::micros`]).
struct WarpsTile {
    kernel: Kernel,
    tm: usize,
    kc: usize,
    /// µs per round of blocks, and per input channel in a round.
    round_us: f64,
    channel_us: f64,
}

/// The most warps of a [`WarpsTile`] block, and so the warps whose registers a multiprocessor
/// holds: `__launch_bounds__(32 * PWW_WARPS)` gives each thread up to 128 of its 64K registers.
const PWW_WARPS: usize = 16;
/// [`Kernel::PointwiseWarps`]: few pixels, long k. ptxas fits 64 weights per lane in sm_90's 128
/// registers per thread of a 512-thread block (72 spilled), so k <= 1024: w1.2's 1152-channel
/// projections stay tiled. Its model is fitted to 114 launches of the 8th session's H100 run:
/// within 15 % of all but a few.
const PWW: WarpsTile = WarpsTile { kernel: Kernel::PointwiseWarps, tm: 4, kc: 64, round_us: 2.8, channel_us: 0.0022 };
/// [`Kernel::PointwiseWarps16`]: 16 pixels per block for larger maps, whose k is short (<= 512).
/// Its model is fitted to the 6 launches the same run measured, each a single round.
const PWW16: WarpsTile =
    WarpsTile { kernel: Kernel::PointwiseWarps16, tm: 16, kc: 32, round_us: 3.9, channel_us: 0.0015 };

impl WarpsTile {
    /// The longest k.
    const fn kmax(&self) -> usize {
        self.kc * PWW_WARPS
    }

    /// The k range per warp and warps per block for a k-channel input, or `None` where the
    /// kernel does not serve: k past [`WarpsTile::kmax`] or not a multiple of 4 (its float4
    /// loads). At least 16 input channels per warp (fewer would leave the warps more to add than
    /// to multiply), at least `tm` warps (warp y finishes pixel y).
    fn shape(&self, k: usize) -> Option<(usize, usize)> {
        if k > self.kmax() || !k.is_multiple_of(4) {
            return None;
        }
        let kc = k.div_ceil(PWW_WARPS).next_multiple_of(4).clamp(16, self.kc);
        Some((kc, k.div_ceil(kc).max(self.tm)))
    }

    /// The plan's estimate (µs) of an `m x k x n` product in blocks of `warps` warps on `sms`
    /// multiprocessors, comparable with [`PwTile::micros`]: rounds of blocks (as many at a time
    /// as a multiprocessor's registers hold), each a round trip to memory, two barriers and its
    /// k, plus [`LAUNCH_US`]. Neither the pixels nor the channels of a block change a round's
    /// time much: its warps multiply in parallel.
    fn micros(&self, m: usize, k: usize, n: usize, warps: usize, sms: usize) -> f64 {
        let blocks = n.div_ceil(32) * m.div_ceil(self.tm);
        let at_once = sms.max(1) * (PWW_WARPS / warps).max(1);
        LAUNCH_US + blocks.div_ceil(at_once) as f64 * (self.round_us + self.channel_us * k as f64)
    }
}

/// The most pixels of a layer that [`Kernel::PointwiseWarps`] may serve (a 32x32 map; larger ones
/// have tiles to spare for the tiled kernels, and its model was not made for so many blocks).
const PWW_MAX_PIXELS: usize = 1024;

/// Depthwise block: channels x lanes; a lane computes runs of `DW_RUN` pixels of a row, a tile has
/// 8 to 32 runs (see [`dw_runs`]).
const DW_CH: u32 = 32;
const DW_ROWS: u32 = 8;
const DW_RUN: u32 = 4;
/// [`Kernel::DepthwiseRegion`]'s tile: [`DW_ROWS`] output rows x this many columns for stride 1
/// and 2 (about as many input pixels per tile either way).
const DWR_COLS: [usize; 2] = [8, 4];

/// Input pixels that a tile of `rows` output rows x `cols[s - 1]` columns covers for kernel size
/// `k` and stride `s`.
const fn tile_region(rows: usize, cols: [usize; 2], k: usize, s: usize) -> usize {
    ((rows - 1) * s + k) * ((cols[s - 1] - 1) * s + k)
}

/// The most input pixels of such a tile's region (every kernel size and stride), for its shared
/// array.
const fn most_region(rows: usize, cols: [usize; 2]) -> usize {
    let (mut most, mut k) = (0, 3);
    while k <= 7 {
        let (a, b) = (tile_region(rows, cols, k, 1), tile_region(rows, cols, k, 2));
        let m = if a > b { a } else { b };
        most = if m > most { m } else { most };
        k += 2;
    }
    most
}

/// Input pixels of a [`Kernel::DepthwiseRegion`] tile for kernel size `k` and stride `s`.
const fn region_pixels(k: usize, s: usize) -> usize {
    tile_region(DW_ROWS as usize, DWR_COLS, k, s)
}

/// The most input pixels of a region, for its shared array.
const DWR_PIXELS: usize = most_region(DW_ROWS as usize, DWR_COLS);

/// [`Kernel::DepthwiseProject`]'s tile: output rows x columns for stride 1 and 2 (a [`DW_ROWS`]
/// thread row computes half a tile row), its region's most input pixels, its most pixels, and the
/// most output channels of its projection (each lane one).
const DP_ROWS: usize = 4;
const DP_COLS: [usize; 2] = [8, 4];
const DP_PIXELS: usize = most_region(DP_ROWS, DP_COLS);
const DP_MAX_PIXELS: usize = DP_ROWS * DP_COLS[0];
const DP_MAX_OUT: usize = DW_CH as usize;

/// Floats of [`Kernel::ExpandDepthwise`]'s shared array, which holds a block's expansion weights
/// (`in` x [`DW_CH`]) and its region's inputs (`in` per pixel), then the expanded region: 46.4 KB,
/// within the 48 KB a block may have without asking. The plan fuses the two layers where they fit.
const EDW_FLOATS: usize = 11600;
/// The most input channels [`Kernel::ExpandDepthwise`] may see: those that fit with the smallest
/// region (3x3, stride 1), a multiple of 4.
const EDW_MAX_IN: usize = EDW_FLOATS / (region_pixels(3, 1) + DW_CH as usize) / 4 * 4;

/// Tiles of `rows` x `cols[s - 1]` output pixels over an `size x size` output of stride `s`.
fn tile_count(size: usize, rows: usize, cols: [usize; 2], s: usize) -> usize {
    size.div_ceil(rows) * size.div_ceil(cols[s - 1])
}

/// Tiles of [`Kernel::DepthwiseRegion`] over an `size x size` output of stride `s`.
fn region_tiles(size: usize, s: usize) -> usize {
    tile_count(size, DW_ROWS as usize, DWR_COLS, s)
}

/// Matvec block: threads, threads per row, rows per block.
const MV_THREADS: u32 = 256;
const MV_LANES: u32 = 32;
const MV_ROWS: u32 = MV_THREADS / MV_LANES;
/// Weights per matvec lane, all loaded before the previous kernel ends, and so the longest row:
/// 1536, w1.2's classifier. Columns of the pooled input that a thread sums together.
const MV_PRE: u32 = 48;
const MV_MAX_COLS: usize = (MV_PRE * MV_LANES) as usize;
const MV_BATCH: u32 = 3;
/// Threads per block of the stem, and output channels per thread.
const STEM_THREADS: u32 = 256;
const STEM_CH: u32 = 4;
/// [`Kernel::StemBlock`]: output tile side, the most channels of the stem and the first block, and
/// threads per block.
const SB_TILE: u32 = 8;
const SB_CH: usize = 32;
const SB_THREADS: u32 = 256;

/// A kernel of `dynofa.cu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `first_conv` + BN + h_swish.
    Stem,
    /// [`Kernel::Stem`] and the first block (depthwise, 1x1, residual) in one kernel.
    StemBlock,
    /// A 1x1 convolution + BN + activation, optionally gated by SE and with a residual (large tiles).
    Pointwise,
    /// [`Kernel::Pointwise`] with small tiles.
    PointwiseSmall,
    /// [`Kernel::PointwiseSmall`]'s tiles with [`PWK_KS`] (or [`PWK_FEW`]) groups of threads per
    /// block, each taking a part of the block's k range: more warps on each tile, for layers of
    /// few tiles. Its model covers the whole k in a block of [`PWK_KS`] groups and at most a block
    /// per multiprocessor (what was measured); other shapes are offered to measurement
    /// (`GpuOptions::tune`) only.
    PointwiseKSplit,
    /// [`Kernel::PointwiseSmall`]'s tiles on the tensor cores (sm_80 and newer), each product in
    /// three tf32 ones for fp32's accuracy, with one or [`PWM_GROUPS`] groups of 4 warps per block,
    /// each warp taking a part of the block's k range. Offered to measurement
    /// (`GpuOptions::tune`) only: not yet timed on a GPU.
    PointwiseMma,
    /// [`Kernel::Pointwise`] for layers with few pixels: k split over a block's warps, each lane's
    /// weights in registers, no dependent k steps; 4 pixels per block.
    PointwiseWarps,
    /// [`Kernel::PointwiseWarps`] with 16 pixels per block and k up to 512.
    PointwiseWarps16,
    /// A depthwise convolution + BN + activation, optionally with SE partial sums.
    Depthwise,
    /// [`Kernel::Depthwise`] from a shared-memory copy of each tile's input, for large maps.
    DepthwiseRegion,
    /// A block's expansion (1x1 + BN + act) and [`Kernel::DepthwiseRegion`] in one kernel, the
    /// expanded region computed in shared memory.
    ExpandDepthwise,
    /// A fully connected layer, with a pooling over its input fused in.
    Matvec,
    /// [`Kernel::DepthwiseRegion`] and the projection after it in one kernel (blocks without SE
    /// and with at most 32 output channels), the depthwise output kept in shared memory.
    DepthwiseProject,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 13] = [
        Kernel::Stem,
        Kernel::StemBlock,
        Kernel::Pointwise,
        Kernel::PointwiseSmall,
        Kernel::PointwiseKSplit,
        Kernel::PointwiseMma,
        Kernel::PointwiseWarps,
        Kernel::PointwiseWarps16,
        Kernel::Depthwise,
        Kernel::DepthwiseRegion,
        Kernel::ExpandDepthwise,
        Kernel::Matvec,
        Kernel::DepthwiseProject,
    ];

    /// Whether this is one of the 1x1 convolution kernels (which share their arguments).
    pub fn is_pointwise(self) -> bool {
        matches!(
            self,
            Kernel::Pointwise
                | Kernel::PointwiseSmall
                | Kernel::PointwiseKSplit
                | Kernel::PointwiseMma
                | Kernel::PointwiseWarps
                | Kernel::PointwiseWarps16
        )
    }

    /// The kernel's number: its place in [`Kernel::ALL`] (the declaration order, tested), what the
    /// persistent kernel's table calls it (`DYNOFA_KID_<name>` in the source).
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The kernel's `extern "C"` name.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Stem => "dynofa_stem",
            Kernel::StemBlock => "dynofa_stem_block",
            Kernel::Pointwise => "dynofa_pointwise",
            Kernel::PointwiseSmall => "dynofa_pointwise_small",
            Kernel::PointwiseKSplit => "dynofa_pointwise_ksplit",
            Kernel::PointwiseMma => "dynofa_pointwise_mma",
            Kernel::PointwiseWarps => "dynofa_pointwise_warps",
            Kernel::PointwiseWarps16 => "dynofa_pointwise_warps16",
            Kernel::Depthwise => "dynofa_depthwise",
            Kernel::DepthwiseRegion => "dynofa_depthwise_region",
            Kernel::ExpandDepthwise => "dynofa_expand_depthwise",
            Kernel::Matvec => "dynofa_matvec",
            Kernel::DepthwiseProject => "dynofa_depthwise_project",
        }
    }
}

/// The complete CUDA C source: the tile sizes and kernel list, then `dynofa.cu`.
pub fn source() -> String {
    let mut s = String::from("// Generated by dynofa_kernels::gpu::source().\n");
    for (name, v) in [
        ("PW_BK", PW_BK),
        ("PW_BM", PW_LARGE.bm),
        ("PW_BN", PW_LARGE.bn),
        ("PW_TM", PW_LARGE.tm),
        ("PW_TN", PW_LARGE.tn),
        ("PWS_BM", PW_SMALL.bm),
        ("PWS_BN", PW_SMALL.bn),
        ("PWS_TM", PW_SMALL.tm),
        ("PWS_TN", PW_SMALL.tn),
        ("PWK_KS", PWK_KS),
        ("PWM_GROUPS", PWM_GROUPS),
        ("DW_CH", DW_CH),
        ("DW_ROWS", DW_ROWS),
        ("DW_RUN", DW_RUN),
        ("DWR_COLS1", DWR_COLS[0] as u32),
        ("DWR_COLS2", DWR_COLS[1] as u32),
        ("DWR_PIXELS", DWR_PIXELS as u32),
        ("DP_ROWS", DP_ROWS as u32),
        ("DP_COLS1", DP_COLS[0] as u32),
        ("DP_COLS2", DP_COLS[1] as u32),
        ("DP_PIXELS", DP_PIXELS as u32),
        ("DP_MAX_PIXELS", DP_MAX_PIXELS as u32),
        ("DP_MAX_OUT", DP_MAX_OUT as u32),
        ("EDW_FLOATS", EDW_FLOATS as u32),
        ("EDW_MAX_IN", EDW_MAX_IN as u32),
        ("STEM_CH", STEM_CH),
        ("SB_TILE", SB_TILE),
        ("SB_CH", SB_CH as u32),
        ("SB_THREADS", SB_THREADS),
        ("MV_THREADS", MV_THREADS),
        ("MV_LANES", MV_LANES),
        ("MV_ROWS", MV_ROWS),
        ("MV_MAX_COLS", MV_MAX_COLS as u32),
        ("MV_PRE", MV_PRE),
        ("MV_BATCH", MV_BATCH),
        ("PW_MAX_GATE", PW_MAX_GATE as u32),
        ("PWW_WARPS", PWW_WARPS as u32),
        ("PWW_TM", PWW.tm as u32),
        ("PWW_KC", PWW.kc as u32),
        ("PWW16_TM", PWW16.tm as u32),
        ("PWW16_KC", PWW16.kc as u32),
        ("DYN_SLOTS", PERSISTENT_SLOTS as u32),
        ("DYN_THREADS", PERSISTENT_THREADS),
        ("DYN_BODY_SHARED", PERSISTENT_BODY_SHARED),
        ("DYN_MAX_STEPS", PERSISTENT_MAX_LAUNCHES as u32),
    ] {
        writeln!(s, "#define {name} {v}").expect("writing to a String");
    }
    let list: String = Kernel::ALL.iter().map(|k| format!(" X({})", k.name())).collect();
    writeln!(s, "#define DYNOFA_KERNELS(X){list}").expect("writing to a String");
    // What a persistent step calls a kernel (persistent_steps).
    for k in Kernel::ALL {
        writeln!(s, "#define DYNOFA_KID_{} {}", k.name(), k.id()).expect("writing to a String");
    }
    s + KERNELS
}

/// A device buffer of the engine (all f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// The weight image ([`GpuImage::data`]).
    Weights,
    /// The active BN set ([`bn_image`]); the engine keeps one per registered set.
    Bn,
    /// The input image, NCHW `[3][r][r]`.
    Input,
    /// The logits, `[1000]`.
    Logits,
    /// Block input and output, alternating.
    Io0,
    /// See [`Buffer::Io0`].
    Io1,
    /// Expanded activations (and the final expansion).
    Expanded,
    /// Depthwise output.
    Dw,
    /// SE partial sums, `[tiles][mid]`.
    Partial,
    /// SE hidden units.
    Hidden,
    /// SE gate, `[mid]`.
    Gate,
    /// `feature_mix_layer`'s output.
    Features,
    /// The partial tiles of a pointwise launch with k split, `[slices][m][n]`.
    Split,
    /// One `unsigned` counter per output tile of a split pointwise launch; zero (as allocated) between launches.
    Tickets,
}

impl Buffer {
    /// The work buffers (all but the weights and BN sets).
    pub const WORK: [Buffer; 12] = [
        Buffer::Input,
        Buffer::Logits,
        Buffer::Io0,
        Buffer::Io1,
        Buffer::Expanded,
        Buffer::Dw,
        Buffer::Partial,
        Buffer::Hidden,
        Buffer::Gate,
        Buffer::Features,
        Buffer::Split,
        Buffer::Tickets,
    ];

    /// Floats (4-byte elements) of work buffer `self` that every sub-network of `net` fits in (0 for
    /// the weights and BN).
    pub fn len(self, net: &Supernet) -> usize {
        let max = SubnetConfig::uniform(7, 6, 4, MAX_RESOLUTION);
        let r = max.r as usize;
        let s0 = Supernet::stem_out(r).pow(2);
        let fs = Supernet::final_size(r).pow(2);
        let blocks = || net.blocks(&max);
        match self {
            Buffer::Weights | Buffer::Bn => 0,
            Buffer::Input => 3 * r * r,
            Buffer::Logits => NUM_CLASSES,
            Buffer::Io0 | Buffer::Io1 => blocks()
                .map(|b| (b.in_size.pow(2) * b.in_ch).max(b.out_size.pow(2) * b.out_ch))
                .fold(s0 * net.stem.max(net.first_block), usize::max),
            Buffer::Expanded => blocks().map(|b| b.in_size.pow(2) * b.mid).fold(fs * net.final_expand, usize::max),
            Buffer::Dw => blocks().map(|b| b.out_size.pow(2) * b.mid).fold(s0 * net.stem, usize::max),
            Buffer::Partial => {
                // SE sums: as many tiles as the smallest depthwise ones of either kernel make; the
                // head's pool: a tile per pointwise tile of pixels, the smallest being
                // PointwiseWarps' ones.
                let head = fs.div_ceil(PWW.tm.min(PW_SMALL.bm as usize)) * net.final_expand;
                blocks()
                    .filter(|b| b.se_mid.is_some())
                    .map(|b| tiles(b.out_size, DW_ROWS as usize).max(region_tiles(b.out_size, b.stride)) * b.mid)
                    .fold(head, usize::max)
            }
            Buffer::Hidden => blocks().filter_map(|b| b.se_mid).max().unwrap_or(0),
            Buffer::Gate => blocks().map(|b| b.mid).max().unwrap_or(0),
            Buffer::Features => net.feature_mix,
            Buffer::Split => SPLIT_FLOATS,
            Buffer::Tickets => TICKETS,
        }
    }
}

/// Depthwise tiles of `per_tile` runs (of [`DW_RUN`] pixels of a row) of an `size x size` output.
fn tiles(size: usize, per_tile: usize) -> usize {
    (size * size.div_ceil(DW_RUN as usize)).div_ceil(per_tile)
}

/// Runs per depthwise tile of a `size x size` map of `c` channels on `sms` multiprocessors: the
/// largest of 32 and 16 that still makes two blocks per multiprocessor, else 8 (one run per lane).
/// Small maps (7x7 at the end of the network) thus spread over the GPU rather than leaving a few
/// blocks per channel group walking the whole map.
fn dw_runs(size: usize, c: usize, sms: usize) -> usize {
    let blocks = |per_tile: usize| c.div_ceil(DW_CH as usize) * tiles(size, per_tile);
    [32, 16].into_iter().find(|&r| blocks(r) >= 2 * sms).unwrap_or(DW_ROWS as usize)
}

/// What a plan is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The GPU's multiprocessors, for which the pointwise and depthwise launches are tiled.
    pub sms: usize,
    /// Whether pointwise layers may use the warps kernels ([`Kernel::PointwiseWarps`],
    /// [`Kernel::PointwiseWarps16`]) where their model rates them fastest (the GPU bench turns it
    /// off to time the plans without them).
    pub pointwise_warps: bool,
    /// Whether pointwise layers may use [`Kernel::PointwiseKSplit`] (likewise).
    pub pointwise_ksplit: bool,
    /// Whether the GPU has tensor cores for tf32 (sm_80 and newer) and measurement may weigh
    /// [`Kernel::PointwiseMma`] for the pointwise layers (no model rates it yet).
    pub pointwise_mma: bool,
    /// Whether depthwise layers use [`Kernel::DepthwiseRegion`] (likewise).
    pub depthwise_region: bool,
    /// Whether the plan may run several layers in one kernel: [`Kernel::StemBlock`] first, and
    /// as alternatives after the separate launches [`Kernel::ExpandDepthwise`] for the blocks
    /// whose inputs fit it and [`Kernel::DepthwiseProject`] for those without SE whose outputs
    /// fit it (likewise).
    pub fused: bool,
}

impl Target {
    /// A GPU with `sms` multiprocessors, every kernel allowed.
    pub fn new(sms: usize) -> Self {
        Target {
            sms,
            pointwise_warps: true,
            pointwise_ksplit: true,
            pointwise_mma: true,
            depthwise_region: true,
            fused: true,
        }
    }

    /// The same with the first kernels only (the tilings and the plain depthwise kernel, a launch
    /// per layer): the plans that the newer kernels are tested against.
    pub fn basic(sms: usize) -> Self {
        Target {
            pointwise_warps: false,
            pointwise_ksplit: false,
            pointwise_mma: false,
            depthwise_region: false,
            fused: false,
            ..Self::new(sms)
        }
    }
}

/// One layer of a plan (or two, where the second sums the first's tiles), with the alternatives
/// that the plan weighed: each a sequence of launches that leaves the same results in the same
/// buffers (up to rounding), the one the plan rates fastest first. Every alternative can be run
/// alone, again and again, on the buffers a run of the plan left (`GpuEngine` times them so).
#[derive(Debug, Clone)]
pub struct Step {
    /// At least one.
    pub alternatives: Vec<Vec<Launch>>,
}

/// One kernel argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg {
    /// A float pointer `offset` floats into a buffer.
    Ptr(Buffer, usize),
    /// A null pointer (an absent optional input).
    Null,
    /// An `int`.
    Int(i32),
    /// A `float`.
    Float(f32),
}

/// One kernel launch of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// The kernel.
    pub kernel: Kernel,
    /// Grid size (x, y, z).
    pub grid: [u32; 3],
    /// Block size (x, y, z).
    pub block: [u32; 3],
    /// Arguments in the kernel's order.
    pub args: Vec<Arg>,
    /// The plan's estimate of the launch's GPU time in µs (pointwise launches, where it picked
    /// the tiling by it), to set against what `GpuEngine::kernel_times` measures.
    pub model_us: Option<f64>,
}

impl Launch {
    /// A launch that does nothing (a matvec of no rows, one block): what a graph node costs
    /// without work (`GpuEngine::launch_floor`).
    pub fn nothing() -> Launch {
        let mut launch =
            matvec((Buffer::Hidden, 0, 0, 0.0), Arg::Null, 0, 0, 0, Arg::Null, ACT_IDENTITY, Buffer::Hidden);
        launch.args.iter_mut().filter(|a| matches!(a, Arg::Ptr(..))).for_each(|a| *a = Arg::Null);
        launch.grid = [1, 1, 1];
        launch
    }

    /// The argument slots (cuLaunchKernel's values), pointers resolved by `base` (a buffer's
    /// device or host address).
    pub fn slots(&self, base: impl Fn(Buffer) -> u64) -> Vec<u64> {
        self.args
            .iter()
            .map(|a| match *a {
                Arg::Ptr(b, offset) => base(b) + 4 * offset as u64,
                Arg::Null => 0,
                Arg::Int(v) => v as u32 as u64,
                Arg::Float(v) => v.to_bits() as u64,
            })
            .collect()
    }
}

/// `plan` as [`PERSISTENT`]'s table: [`PERSISTENT_STEP_WORDS`] words per launch (its kernel's
/// place in [`Kernel::ALL`], grid and block as `u32` pairs, then [`Launch::slots`], the rest zero),
/// pointers resolved by `base`.
///
/// # Panics
/// If a launch does not suit the persistent kernel, which the plans never make (tested): a block
/// of more than [`PERSISTENT_THREADS`] threads, of a number not a multiple of 32 (its barrier),
/// or not flat in z; more arguments than the slots; a kernel that never waits for the launch
/// before it ([`Kernel::Stem`], [`Kernel::StemBlock`]) past the first launch; more than
/// [`PERSISTENT_MAX_LAUNCHES`] launches.
pub fn persistent_steps(plan: &[Launch], base: impl Fn(Buffer) -> u64) -> Vec<u64> {
    assert!(plan.len() <= PERSISTENT_MAX_LAUNCHES, "{} launches", plan.len());
    let mut table = Vec::with_capacity(plan.len() * PERSISTENT_STEP_WORDS);
    for (i, l) in plan.iter().enumerate() {
        let threads = l.block[0] * l.block[1];
        assert!(
            l.block[2] == 1 && threads <= PERSISTENT_THREADS && threads.is_multiple_of(32),
            "{:?}: block {:?} does not suit the persistent kernel",
            l.kernel,
            l.block
        );
        assert!(l.args.len() <= PERSISTENT_SLOTS, "{:?}: {} arguments", l.kernel, l.args.len());
        assert!(
            i == 0 || !matches!(l.kernel, Kernel::Stem | Kernel::StemBlock),
            "{:?} after the first launch",
            l.kernel
        );
        let [gx, gy, gz] = l.grid;
        let [dx, dy, _] = l.block;
        let pair = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        table.extend([pair(l.kernel.id(), gx), pair(gy, gz), pair(dx, dy), 0]);
        let mut slots = l.slots(&base);
        slots.resize(PERSISTENT_SLOTS, 0);
        table.extend(slots);
    }
    table
}

/// Where one launch's time went in a run of [`PERSISTENT`] with a trace (its last argument:
/// `[launches][blocks][2]` times in ns, per launch and block when the block saw the launch before
/// done everywhere, or started, and when it arrived after this one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PersistentSpan {
    /// From the first block's start of the launch to the last block's arrival after it (ns).
    pub launch_ns: f64,
    /// From that last arrival to the first block's start of the next launch (ns; 0 after the last
    /// launch): the barrier's own latency.
    pub barrier_ns: f64,
}

/// The spans of `trace`, a run of `launches` launches on `blocks` blocks (as [`PersistentSpan`]
/// says).
///
/// # Panics
/// If `trace` is not `launches x blocks x 2` long.
pub fn persistent_spans(trace: &[u64], launches: usize, blocks: usize) -> Vec<PersistentSpan> {
    assert_eq!(trace.len(), launches * blocks * 2, "a trace of {launches} launches on {blocks} blocks");
    let rows: Vec<&[u64]> = trace.chunks(blocks * 2).collect();
    let first_start = |row: &[u64]| row.iter().step_by(2).copied().min().unwrap_or(0);
    let last_arrival = |row: &[u64]| row.iter().skip(1).step_by(2).copied().max().unwrap_or(0);
    (0..launches)
        .map(|i| {
            let end = last_arrival(rows[i]);
            let next = rows.get(i + 1).map_or(end, |r| first_start(r));
            PersistentSpan {
                launch_ns: end.saturating_sub(first_start(rows[i])) as f64,
                barrier_ns: next.saturating_sub(end) as f64,
            }
        })
        .collect()
}

/// Offsets (in floats) of one elastic block's weights in the image.
#[derive(Debug, Clone, Copy)]
struct BlockAt {
    /// `[in][mid_max]`.
    expand: usize,
    /// Taps for k = 3, 5, 7, each `[k*k][mid_max]`.
    taps: [usize; 3],
    /// `[mid_max][out]`.
    project: usize,
    /// reduce `[se_max][mid_max]`, its bias, expand `[mid_max][se_max]`, its bias, se_max.
    se: Option<(usize, usize, usize, usize, usize)>,
    mid_max: usize,
}

/// The supernet's weights as one device image; sub-networks read it in place.
#[derive(Debug, Clone)]
pub struct GpuImage {
    /// Every weight, each tensor starting on a 128-byte boundary.
    pub data: Vec<f32>,
    net: Supernet,
    stem: usize,
    first_dw: usize,
    first_pw: usize,
    blocks: Vec<BlockAt>,
    final_expand: usize,
    feature_mix: usize,
    classifier: usize,
    classifier_bias: usize,
    /// Where each BN layer starts in a BN set, and the floats of a [`bn_image`].
    bn_start: [usize; NUM_BN],
    bn_len: usize,
}

impl GpuImage {
    /// Lay out `w` for the kernels (see `dynofa.cu`'s header for the layouts).
    pub fn new(w: &SupernetWeights) -> Self {
        let mut data = Vec::new();
        let mut push = |v: &[f32]| {
            data.resize(data.len().next_multiple_of(32), 0.0);
            let at = data.len();
            data.extend_from_slice(v);
            at
        };
        // A 1x1 convolution's W[o][i] as `[k][n]`.
        let in_out = |p: &PackedB| -> Vec<f32> {
            let (k, n) = (p.k(), p.n());
            (0..k * n).map(|e| p.get(e % n, e / n)).collect()
        };
        let stem = push(&in_out(&w.stem));
        let first_dw = push(&w.first_dw);
        let first_pw = push(&in_out(&w.first_pw));
        let blocks = w
            .blocks
            .iter()
            .map(|b| BlockAt {
                expand: push(&in_out(&b.expand)),
                taps: [3, 5, 7].map(|k| push(b.taps(k))),
                project: push(&in_out(&b.project)),
                se: b.se.as_ref().map(|se| {
                    (push(&se.reduce), push(&se.reduce_bias), push(&se.expand), push(&se.expand_bias), se.se_max)
                }),
                mid_max: b.mid_max,
            })
            .collect();
        let final_expand = push(&in_out(&w.final_expand));
        let feature_mix = push(&w.feature_mix);
        let classifier = push(&w.classifier);
        let classifier_bias = push(&w.classifier_bias);
        GpuImage {
            data,
            net: *w.supernet(),
            stem,
            first_dw,
            first_pw,
            blocks,
            final_expand,
            feature_mix,
            classifier,
            classifier_bias,
            bn_start: core::array::from_fn(|i| w.bn_range(i).start),
            bn_len: 2 * w.bn_range(NUM_BN - 1).end,
        }
    }

    /// Floats of a [`bn_image`] of these weights.
    pub fn bn_len(&self) -> usize {
        self.bn_len
    }

    /// The launches of one inference of `cfg` (valid for this supernet) on `target` (the
    /// pointwise launches are tiled and split for its multiprocessors), BN from [`Buffer::Bn`]
    /// laid out by [`bn_image`]: each of [`GpuImage::steps`]' first alternative.
    pub fn plan(&self, cfg: &SubnetConfig, target: Target) -> Vec<Launch> {
        let first = |s: Step| s.alternatives.into_iter().next().expect("every step has an alternative");
        self.steps(cfg, target).into_iter().flat_map(first).collect()
    }

    /// [`GpuImage::plan`] as steps, each with the alternatives that the plan weighed (the
    /// kernel, tiling and split of a layer), for measuring them ([`Step`]).
    pub fn steps(&self, cfg: &SubnetConfig, target: Target) -> Vec<Step> {
        let net = &self.net;
        let (starts, total) = (&self.bn_start, self.bn_len / 2);
        let bn = |index: usize| [Arg::Ptr(Buffer::Bn, starts[index]), Arg::Ptr(Buffer::Bn, total + starts[index])];
        let w = |offset: usize| Arg::Ptr(Buffer::Weights, offset);
        let mut plan: Vec<Step> = Vec::new();
        // A step without alternatives, and one of single-launch alternatives.
        let one = |l: Launch| Step { alternatives: vec![vec![l]] };
        let each = |ls: Vec<Launch>| Step { alternatives: ls.into_iter().map(|l| vec![l]).collect() };

        let r = cfg.r as usize;
        let s0 = Supernet::stem_out(r);
        let (c0, c1) = (net.stem, net.first_block);
        let [scale, shift] = bn(BN_STEM);
        assert_eq!(c0 % STEM_CH as usize, 0, "the stem kernel computes {STEM_CH} channels per thread");
        let stem = Launch {
            kernel: Kernel::Stem,
            grid: [(s0 * s0 * c0 / STEM_CH as usize).div_ceil(STEM_THREADS as usize) as u32, 1, 1],
            block: [STEM_THREADS, 1, 1],
            args: vec![
                Arg::Ptr(Buffer::Input, 0),
                int(r),
                int(s0),
                w(self.stem),
                int(c0),
                int(c0),
                scale,
                shift,
                Arg::Ptr(Buffer::Io0, 0),
            ],
            model_us: None,
        };

        let (mut x, mut y) = (Buffer::Io0, Buffer::Io1);
        let first = BlockShape {
            index: 0,
            unit: 0,
            in_ch: c0,
            mid: c0,
            out_ch: c1,
            se_mid: None,
            kernel: 3,
            stride: 1,
            act: Activation::Relu,
            residual: c0 == c1,
            in_size: s0,
            out_size: s0,
        };
        let dws = depthwise(&first, w(self.first_dw), c0, bn(BN_FIRST_DW), x, None, target);
        let pws = pointwise(
            Buffer::Dw,
            s0 * s0,
            c0,
            w(self.first_pw),
            c1,
            c1,
            bn(BN_FIRST_PL),
            ACT_IDENTITY,
            None,
            first.residual.then_some(x),
            y,
            target,
        );
        // The stem and the first block as one step: every combination of their launches, and
        // the kernel that runs all three where its shared arrays hold the channels.
        let mut alternatives: Vec<Vec<Launch>> =
            dws.iter().flat_map(|(d, _)| pws.iter().map(|p| vec![stem.clone(), d.clone(), p.clone()])).collect();
        if target.fused && [c0, c1].iter().all(|&c| c <= SB_CH && c.is_multiple_of(4)) {
            let ([d_scale, d_shift], [p_scale, p_shift]) = (bn(BN_FIRST_DW), bn(BN_FIRST_PL));
            // The stem launch's arguments less its output, then the first block's.
            let block = [
                w(self.first_dw),
                int(c0),
                d_scale,
                d_shift,
                w(self.first_pw),
                int(c1),
                int(c1),
                p_scale,
                p_shift,
                int(usize::from(first.residual)),
                Arg::Ptr(y, 0),
            ];
            let args = stem.args[..stem.args.len() - 1].iter().copied().chain(block).collect();
            let tiles = s0.div_ceil(SB_TILE as usize).pow(2) as u32;
            let fused = Launch {
                kernel: Kernel::StemBlock,
                grid: [tiles, 1, 1],
                block: [SB_THREADS, 1, 1],
                args,
                model_us: None,
            };
            alternatives.insert(0, vec![fused]);
        }
        plan.push(Step { alternatives });
        core::mem::swap(&mut x, &mut y);

        for b in net.blocks(cfg) {
            let at = &self.blocks[b.index - 1];
            let [bn_e, bn_d, bn_p] =
                [BlockPart::Expand, BlockPart::Depthwise, BlockPart::Project].map(|p| bn(bn_block(b.index, p)));
            let act = act_code(b.act);
            let expands = pointwise(
                x,
                b.in_size.pow(2),
                b.in_ch,
                w(at.expand),
                at.mid_max,
                b.mid,
                bn_e,
                act,
                None,
                None,
                Buffer::Expanded,
                target,
            );
            let (taps, partial) = (w(at.taps[b.kernel / 2 - 1]), b.se_mid.map(|_| Buffer::Partial));
            let dws = depthwise(&b, taps, at.mid_max, bn_d, Buffer::Expanded, partial, target);
            // The expansion and the depthwise layer as one step: every combination of their
            // separate launches, then the kernel that runs both where it may and its shared array
            // holds the region's inputs; each with its number of depthwise tiles. The fused
            // kernel comes last: on the H100 it lost to the separate launches on 19 of 20 layers
            // (23 µs against 13 for a 7x7 on 56x56), recomputing each tile's halo, so only
            // measurement (`tune`) picks it.
            let fits = (region_pixels(b.kernel, b.stride) + DW_CH as usize) * b.in_ch <= EDW_FLOATS;
            let fused = (target.fused && fits && b.in_ch <= EDW_MAX_IN && b.in_ch.is_multiple_of(4)).then(|| {
                let (l, tiles) = dw_launch(Kernel::DepthwiseRegion, &b, taps, at.mid_max, bn_d, x, partial, 0);
                let [escale, eshift] = bn_e;
                let expand = [
                    Arg::Ptr(x, 0),
                    int(b.in_size),
                    int(b.in_ch),
                    w(at.expand),
                    int(at.mid_max),
                    escale,
                    eshift,
                    int(act),
                ];
                // The region launch's arguments less its input, size and per_tile.
                let args = expand.into_iter().chain(l.args[2..8].iter().copied()).chain(l.args[9..].iter().copied());
                (vec![Launch { kernel: Kernel::ExpandDepthwise, args: args.collect(), ..l }], tiles)
            });
            let dws: Vec<(Vec<Launch>, usize)> = expands
                .iter()
                .flat_map(|e| dws.iter().map(|(d, tiles)| (vec![e.clone(), d.clone()], *tiles)))
                .chain(fused)
                .collect();
            // The depthwise step's alternatives where the projection may join them (no SE).
            let (gate, dws) = match (b.se_mid, at.se) {
                (Some(se_mid), Some((reduce, reduce_bias, expand, expand_bias, se_max))) => {
                    // The SE reduce layer sums the depthwise launch's tiles: each alternative
                    // carries its own.
                    let mean = 1.0 / b.out_size.pow(2) as f32;
                    let squeeze = |tiles: usize| {
                        let parts = (Buffer::Partial, tiles, b.mid, mean);
                        matvec(parts, w(reduce), at.mid_max, se_mid, b.mid, w(reduce_bias), ACT_RELU, Buffer::Hidden)
                    };
                    plan.push(Step {
                        alternatives: dws
                            .into_iter()
                            .map(|(mut ls, tiles)| {
                                ls.push(squeeze(tiles));
                                ls
                            })
                            .collect(),
                    });
                    // The SE expand layer on its own: computed by every projection block for its
                    // slice of channels instead, it cost an H100 5 to 13 µs per launch, more than
                    // this launch.
                    let hidden = (Buffer::Hidden, 1, 0, 1.0);
                    plan.push(one(matvec(
                        hidden,
                        w(expand),
                        se_max,
                        b.mid,
                        se_mid,
                        w(expand_bias),
                        ACT_HSIGMOID,
                        Buffer::Gate,
                    )));
                    (Some(Buffer::Gate), None)
                }
                _ => (None, Some(dws.into_iter().map(|d| d.0).collect::<Vec<_>>())),
            };
            let res = b.residual.then_some(x);
            let projects = pointwise(
                Buffer::Dw,
                b.out_size.pow(2),
                b.mid,
                w(at.project),
                b.out_ch,
                b.out_ch,
                bn_p,
                ACT_IDENTITY,
                gate,
                res,
                y,
                target,
            );
            match dws {
                // Without SE, where the projection's channels fit DepthwiseProject (and both
                // layers' channels its 4-channel loads): the depthwise
                // step and the projection as one step, every combination of their launches, then
                // each expansion with the kernel that runs both (measurement's only: not timed
                // on a GPU yet).
                Some(dws)
                    if target.fused
                        && b.out_ch <= DP_MAX_OUT
                        && b.out_ch.is_multiple_of(4)
                        && b.mid.is_multiple_of(4) =>
                {
                    let mut alternatives: Vec<Vec<Launch>> = dws
                        .iter()
                        .flat_map(|d| projects.iter().map(|p| d.iter().chain([p]).cloned().collect()))
                        .collect();
                    let fused = dp_launch(&b, taps, at.mid_max, bn_d, w(at.project), bn_p, res, y);
                    alternatives.extend(expands.iter().map(|e| vec![e.clone(), fused.clone()]));
                    plan.push(Step { alternatives });
                }
                Some(dws) => {
                    plan.push(Step { alternatives: dws });
                    plan.push(each(projects));
                }
                None => plan.push(each(projects)),
            }
            core::mem::swap(&mut x, &mut y);
        }

        let fs = Supernet::final_size(r).pow(2);
        let (c5, fe, fm) = (net.unit_out[4], net.final_expand, net.feature_mix);
        let expand = pointwise(
            x,
            fs,
            c5,
            w(self.final_expand),
            fe,
            fe,
            bn(BN_FINAL),
            ACT_HSWISH,
            None,
            None,
            Buffer::Expanded,
            target,
        );
        // The average pool: the expansion's column sums per tile of pixels, added up by the
        // feature-mix layer (so each alternative carries its own).
        let head = |expand: Launch| {
            let expand = pooled_into(expand, Buffer::Partial);
            let pooled = (Buffer::Partial, expand.grid[1] as usize, fe, 1.0 / fs as f32);
            let mix = matvec(pooled, w(self.feature_mix), fe, fm, fe, Arg::Null, ACT_HSWISH, Buffer::Features);
            vec![expand, mix]
        };
        plan.push(Step { alternatives: expand.into_iter().map(head).collect() });
        let features = (Buffer::Features, 1, 0, 1.0);
        plan.push(one(matvec(
            features,
            w(self.classifier),
            fm,
            NUM_CLASSES,
            fm,
            w(self.classifier_bias),
            ACT_IDENTITY,
            Buffer::Logits,
        )));
        plan
    }
}

/// A BN set as the device reads it, every scale then every shift: `table` (a sub-network's, from
/// [`SupernetWeights::load_bn_statistics`]) or, with `None`, the supernet's own statistics.
pub fn bn_image(weights: &SupernetWeights, table: Option<&BnTable>) -> Vec<f32> {
    let t = table.unwrap_or(&weights.bn_table);
    [&t.scale[..], &t.shift[..]].concat()
}

/// Activation codes of `dynofa.cu`.
const ACT_IDENTITY: usize = 0;
const ACT_RELU: usize = 1;
const ACT_HSWISH: usize = 2;
const ACT_HSIGMOID: usize = 3;

fn act_code(a: Activation) -> usize {
    match a {
        Activation::Relu => ACT_RELU,
        Activation::HSwish => ACT_HSWISH,
    }
}

fn int(v: usize) -> Arg {
    Arg::Int(i32::try_from(v).expect("layer sizes fit an int"))
}

/// A buffer argument that may be absent (a null pointer then).
fn optional(b: Option<Buffer>) -> Arg {
    b.map_or(Arg::Null, |b| Arg::Ptr(b, 0))
}

/// The pointwise launches that could compute `a [m][k]` x weights `[k][ldw]` -> `out [m][n]`, its
/// input gated by `gate`, on `target`: the best k split of each tiling and, where they serve, the
/// warps kernels and the k-split tiles, fastest first by the models ([`PwTile::micros`],
/// [`WarpsTile::micros`], [`ksplit_micros`]), then the k-split shapes that only measurement rates,
/// then the tensor cores' ([`Kernel::PointwiseMma`], likewise).
fn pointwise(
    a: Buffer,
    m: usize,
    k: usize,
    w: Arg,
    ldw: usize,
    n: usize,
    [scale, shift]: [Arg; 2],
    act: usize,
    gate: Option<Buffer>,
    res: Option<Buffer>,
    out: Buffer,
    target: Target,
) -> Vec<Launch> {
    let (bk, sms) = (PW_BK as usize, target.sms);
    let launch = |kernel, grid: [usize; 3], block: [usize; 3], kc: usize, model_us: Option<f64>| Launch {
        kernel,
        grid: grid.map(|g| g as u32),
        block: block.map(|b| b as u32),
        args: vec![
            Arg::Ptr(a, 0),
            int(m),
            int(k),
            w,
            int(ldw),
            int(n),
            scale,
            shift,
            int(act),
            optional(gate),
            optional(res),
            Arg::Ptr(out, 0),
            // pool: see pooled_into.
            Arg::Null,
            int(kc),
            Arg::Ptr(Buffer::Split, 0),
            Arg::Ptr(Buffer::Tickets, 0),
        ],
        model_us,
    };
    // A block stages the gates of its k slice in shared memory.
    let gate_fits = |kc: usize| gate.is_none() || kc <= PW_MAX_GATE;
    let mut found = Vec::new();
    let mut small_kc = None;
    for tile in [&PW_LARGE, &PW_SMALL] {
        let mut best: Option<(f64, usize)> = None;
        for splits in (0..).map(|i| 1 << i).take_while(|&s| s <= MAX_SPLITS) {
            let kc = k.div_ceil(splits).next_multiple_of(bk);
            let slices = k.div_ceil(kc);
            if slices > 1 && (slices * m * n > SPLIT_FLOATS || tile.tiles(m, n) > TICKETS) {
                continue;
            }
            if !gate_fits(kc) {
                continue;
            }
            let us = tile.micros(m, k, n, kc, sms);
            if best.is_none_or(|(b, _)| us < b) {
                best = Some((us, kc));
            }
        }
        if let Some((us, kc)) = best {
            if tile.kernel == Kernel::PointwiseSmall {
                small_kc = Some(kc);
            }
            let grid = tile.grid(m, k, n, kc);
            found.push((us, launch(tile.kernel, grid, [tile.threads() as usize, 1, 1], kc, Some(us))));
        }
    }
    // The k-split tiles: the whole k in each block, rated by its model where that was fitted
    // ([`ksplit_micros`]), else after the models' picks (measurement's only), as is the split
    // across blocks with the small tiles' slices (where those split), and the whole k in blocks of
    // [`PWK_FEW`] groups where the tiles outnumber the multiprocessors; each group at least one step.
    let mut unrated = Vec::new();
    let few = (PW_SMALL.tiles(m, n) > sms).then_some((k, PWK_FEW));
    let shapes = [Some((k, PWK_KS)), small_kc.filter(|&kc| kc != k).map(|kc| (kc, PWK_KS)), few];
    for (kc, groups) in shapes.into_iter().flatten().filter(|_| target.pointwise_ksplit) {
        if kc >= (groups * PW_BK) as usize && gate_fits(kc) {
            let grid = PW_SMALL.grid(m, k, n, kc);
            let block = [(groups * PW_SMALL.threads()) as usize, 1, 1];
            match ksplit_micros(m, k, n, sms).filter(|_| kc == k && groups == PWK_KS) {
                Some(us) => found.push((us, launch(Kernel::PointwiseKSplit, grid, block, kc, Some(us)))),
                None => unrated.push(launch(Kernel::PointwiseKSplit, grid, block, kc, None)),
            }
        }
    }
    // The tensor cores, measurement's only: the whole k in blocks of one group and of
    // [`PWM_GROUPS`], and the small tiles' slices (one group) where those split; every warp at
    // least one step of 8 channels.
    let mma = [Some((k, 1)), Some((k, PWM_GROUPS)), small_kc.filter(|&kc| kc != k).map(|kc| (kc, 1))];
    for (kc, groups) in mma.into_iter().flatten().filter(|_| target.pointwise_mma) {
        if kc >= (groups * 32) as usize && gate_fits(kc) {
            let block = [(groups * PW_SMALL.threads()) as usize, 1, 1];
            unrated.push(launch(Kernel::PointwiseMma, PW_SMALL.grid(m, k, n, kc), block, kc, None));
        }
    }
    if target.pointwise_warps {
        let small_map = m <= PWW_MAX_PIXELS;
        for (tile, serves) in [(&PWW, small_map), (&PWW16, true)] {
            if let Some((kc, warps)) = tile.shape(k).filter(|_| serves) {
                let us = tile.micros(m, k, n, warps, sms);
                let grid = [n.div_ceil(32), m.div_ceil(tile.tm), 1];
                found.push((us, launch(tile.kernel, grid, [32, warps, 1], kc, Some(us))));
            }
        }
    }
    found.sort_by(|x, y| x.0.total_cmp(&y.0));
    found.into_iter().map(|(_, l)| l).chain(unrated).collect()
}

/// Pointwise launch `l` writing its output's column sums per tile of pixels to `pool`
/// (`[tiles][n]`, the tiles being `l.grid[1]`).
fn pooled_into(mut l: Launch, pool: Buffer) -> Launch {
    // pool, kc, the split buffer and the tickets end a pointwise launch's arguments.
    let at = l.args.len() - 4;
    l.args[at] = Arg::Ptr(pool, 0);
    l
}

/// The depthwise launches that could compute block `b` from `input` into [`Buffer::Dw`] (their
/// tiles' SE sums into `partial`, if given) on `target`, each with its number of tiles, the
/// preferred first: [`Kernel::DepthwiseRegion`], then [`Kernel::Depthwise`] with tiles small
/// enough to make blocks for every multiprocessor. On the H100 the region kernel won on all 23
/// layers where both were timed, small maps too (1.9 against 2.4 µs for a 3x3 on 5x5, 3.5
/// against 6.5 for a 7x7 on 14x14): a `Depthwise` thread reads its run's k rows one dependent
/// round trip after another.
fn depthwise(
    b: &BlockShape,
    taps: Arg,
    ldw: usize,
    bn: [Arg; 2],
    input: Buffer,
    partial: Option<Buffer>,
    target: Target,
) -> Vec<(Launch, usize)> {
    let per_tile = dw_runs(b.out_size, b.mid, target.sms);
    let plain = dw_launch(Kernel::Depthwise, b, taps, ldw, bn, input, partial, per_tile);
    let region =
        target.depthwise_region.then(|| dw_launch(Kernel::DepthwiseRegion, b, taps, ldw, bn, input, partial, 0));
    region.into_iter().chain([plain]).collect()
}

/// A depthwise launch of `kernel` for block `b` (see [`depthwise`]) with its number of tiles: of
/// `per_tile` runs for [`Kernel::Depthwise`], of the region kernels' fixed size (`per_tile`
/// unused) for [`Kernel::DepthwiseRegion`].
fn dw_launch(
    kernel: Kernel,
    b: &BlockShape,
    taps: Arg,
    ldw: usize,
    [scale, shift]: [Arg; 2],
    input: Buffer,
    partial: Option<Buffer>,
    per_tile: usize,
) -> (Launch, usize) {
    let tiles = match kernel {
        Kernel::Depthwise => tiles(b.out_size, per_tile),
        _ => region_tiles(b.out_size, b.stride),
    };
    let launch = Launch {
        kernel,
        grid: [b.mid.div_ceil(DW_CH as usize) as u32, tiles as u32, 1],
        block: [DW_CH, DW_ROWS, 1],
        args: vec![
            Arg::Ptr(input, 0),
            int(b.in_size),
            int(b.mid),
            taps,
            int(ldw),
            int(b.kernel),
            int(b.stride),
            int(b.out_size),
            int(per_tile),
            scale,
            shift,
            int(act_code(b.act)),
            Arg::Ptr(Buffer::Dw, 0),
            optional(partial),
        ],
        model_us: None,
    };
    (launch, tiles)
}

/// A [`Kernel::DepthwiseProject`] launch of block `b` from [`Buffer::Expanded`]: its depthwise
/// layer (`taps` `[k*k][ldw]`, BN `dw_bn`, the block's activation) and projection (weights
/// `project` `[mid][out_ch]`, BN `project_bn`, no activation, the residual `res` added) into `out`.
#[allow(clippy::too_many_arguments)]
fn dp_launch(
    b: &BlockShape,
    taps: Arg,
    ldw: usize,
    dw_bn: [Arg; 2],
    project: Arg,
    [pscale, pshift]: [Arg; 2],
    res: Option<Buffer>,
    out: Buffer,
) -> Launch {
    assert!(b.out_ch <= DP_MAX_OUT, "DepthwiseProject computes at most {DP_MAX_OUT} output channels");
    let tiles = tile_count(b.out_size, DP_ROWS, DP_COLS, b.stride);
    // The region launch's arguments less per_tile and its outputs, then the projection's.
    let (region, _) = dw_launch(Kernel::DepthwiseRegion, b, taps, ldw, dw_bn, Buffer::Expanded, None, 0);
    let n = int(b.out_ch);
    let project = [project, n, n, pscale, pshift, int(ACT_IDENTITY), optional(res), Arg::Ptr(out, 0)];
    Launch {
        kernel: Kernel::DepthwiseProject,
        grid: [1, tiles as u32, 1],
        args: region.args[..8].iter().chain(&region.args[9..12]).copied().chain(project).collect(),
        ..region
    }
}

/// A [`Kernel::Matvec`] launch: `out = act(W [rows][cols] (ld ldw) x + bias)` where `x` is the
/// scaled sum of `nparts` rows of `parts` (stride `ldp`).
fn matvec(
    (parts, nparts, ldp, xscale): (Buffer, usize, usize, f32),
    w: Arg,
    ldw: usize,
    rows: usize,
    cols: usize,
    bias: Arg,
    act: usize,
    out: Buffer,
) -> Launch {
    assert!(cols <= MV_MAX_COLS, "matvec input of {cols} exceeds MV_MAX_COLS");
    Launch {
        kernel: Kernel::Matvec,
        grid: [rows.div_ceil(MV_ROWS as usize) as u32, 1, 1],
        block: [MV_THREADS, 1, 1],
        args: vec![
            Arg::Ptr(parts, 0),
            int(nparts),
            int(ldp),
            Arg::Float(xscale),
            w,
            int(ldw),
            int(rows),
            int(cols),
            bias,
            int(act),
            Arg::Ptr(out, 0),
        ],
        model_us: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_persistent_kernel_asks_for_what_the_gpu_allows() {
        // An H100 and an Orin allow 227 and 163 KiB less the kernel's own: two 48 KiB launch blocks.
        assert_eq!(persistent_shared(227 * 1024 - 22_000), Some(PERSISTENT_SHARED));
        assert_eq!(persistent_shared(163 * 1024 - 22_000), Some(PERSISTENT_SHARED));
        // A Xavier allows 96 KiB, the kernel's own included: what is left.
        assert_eq!(persistent_shared(96 * 1024 - 22_000), Some(96 * 1024 - 22_000));
        // Exactly one launch block's, and less.
        assert_eq!(persistent_shared(PERSISTENT_BODY_SHARED), Some(PERSISTENT_BODY_SHARED));
        assert_eq!(persistent_shared(PERSISTENT_BODY_SHARED - 1), None);
    }

    #[test]
    fn every_plan_suits_the_persistent_kernel() {
        let base = |b: Buffer| (b as u64 + 1) << 32;
        for net in [Supernet::W1_0, Supernet::W1_2] {
            let image = GpuImage::new(&SupernetWeights::seeded(net, 1));
            for cfg in [SubnetConfig::uniform(7, 6, 4, 224), SubnetConfig::uniform(3, 3, 2, 128)] {
                let old = Target::basic(132);
                for target in [6, 16, 132].map(Target::new).into_iter().chain([old]) {
                    let plan = image.plan(&cfg, target);
                    let table = persistent_steps(&plan, base);
                    assert_eq!(table.len(), plan.len() * PERSISTENT_STEP_WORDS);
                    // Each step: kernel and grid x, grid y and z, block x and y, then the slots.
                    for (l, step) in plan.iter().zip(table.chunks(PERSISTENT_STEP_WORDS)) {
                        let id = u64::from(l.kernel.id());
                        let pair = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
                        assert_eq!(
                            step[..4],
                            [
                                id | u64::from(l.grid[0]) << 32,
                                pair(l.grid[1], l.grid[2]),
                                pair(l.block[0], l.block[1]),
                                0
                            ]
                        );
                        let slots = l.slots(base);
                        assert_eq!(step[4..4 + slots.len()], slots[..]);
                        assert!(step[4 + slots.len()..].iter().all(|&w| w == 0));
                    }
                    // Every alternative that measuring may pick, each as a plan's second launch.
                    for l in image.steps(&cfg, target).iter().flat_map(|s| s.alternatives.iter().flatten()) {
                        if !matches!(l.kernel, Kernel::Stem | Kernel::StemBlock) {
                            persistent_steps(&[plan[0].clone(), l.clone()], base);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_plan_fits_the_persistent_kernels_table() {
        // Depth 4 everywhere (the most blocks), each kernel size and expansion, the largest and
        // smallest resolution; each step's longest alternative (what measuring may pick).
        let mut longest = 0;
        for net in [Supernet::W1_0, Supernet::W1_2] {
            let image = GpuImage::new(&SupernetWeights::seeded(net, 1));
            let old = Target::basic(132);
            for (k, e, r) in [(7, 6, 224), (5, 4, 224), (3, 3, 224), (7, 6, 128), (3, 3, 128)] {
                for target in [6, 16, 132].map(Target::new).into_iter().chain([old]) {
                    let steps = image.steps(&SubnetConfig::uniform(k, e, 4, r), target);
                    let most: usize = steps.iter().map(|s| s.alternatives.iter().map(Vec::len).max().unwrap()).sum();
                    longest = longest.max(most);
                }
            }
        }
        println!("the longest plan: {longest} launches");
        assert!(longest <= PERSISTENT_MAX_LAUNCHES, "{longest} launches");
    }

    #[test]
    fn a_kernels_id_is_its_place_in_all() {
        for (i, k) in Kernel::ALL.into_iter().enumerate() {
            assert_eq!(k.id() as usize, i, "{k:?}");
        }
    }

    #[test]
    fn persistent_spans_time_each_launch_and_barrier() {
        // Two launches on two blocks: (start, arrival) per block.
        let trace = [10, 20, 12, 25, 27, 40, 26, 33];
        let spans = persistent_spans(&trace, 2, 2);
        assert_eq!(spans[0], PersistentSpan { launch_ns: 15.0, barrier_ns: 1.0 });
        assert_eq!(spans[1], PersistentSpan { launch_ns: 14.0, barrier_ns: 0.0 });
    }

    #[test]
    #[should_panic(expected = "after the first launch")]
    fn the_persistent_kernel_refuses_a_stem_after_the_first_launch() {
        let image = GpuImage::new(&SupernetWeights::seeded(Supernet::W1_0, 1));
        let plan = image.plan(&SubnetConfig::uniform(3, 3, 2, 128), Target::new(6));
        persistent_steps(&[plan[1].clone(), plan[0].clone()], |_| 0);
    }

    #[test]
    fn every_pointer_of_every_plan_lies_inside_its_buffer() {
        // Tile counts grow with the multiprocessors, so each count gets its plans checked.
        for net in [Supernet::W1_0, Supernet::W1_2] {
            let image = GpuImage::new(&SupernetWeights::seeded(net, 1));
            for cfg in [SubnetConfig::uniform(7, 6, 4, 224), SubnetConfig::uniform(3, 3, 2, 128)] {
                // Xavier NX, Orin AGX, H100.
                let targets = [6, 16, 132].map(Target::new).into_iter();
                let old = Target::basic(132);
                for target in targets.chain([old]) {
                    let steps = image.steps(&cfg, target);
                    // Every alternative: GpuEngine may measure and pick any.
                    for l in steps.iter().flat_map(|s| s.alternatives.iter().flatten()) {
                        for a in &l.args {
                            if let Arg::Ptr(b, offset) = *a {
                                let len = match b {
                                    Buffer::Weights => image.data.len(),
                                    Buffer::Bn => image.bn_len(),
                                    b => b.len(&net),
                                };
                                assert!(offset < len, "{:?}: {b:?} + {offset} outside {len}", l.kernel);
                            }
                        }
                        // The channels are argument 8 of ExpandDepthwise (after the expansion's).
                        let c = l.args[if l.kernel == Kernel::ExpandDepthwise { 8 } else { 2 }];
                        if let (
                            Kernel::Depthwise | Kernel::DepthwiseRegion | Kernel::ExpandDepthwise,
                            Arg::Int(c),
                            Some(Arg::Ptr(Buffer::Partial, _)),
                        ) = (l.kernel, c, l.args.last())
                        {
                            let sums = l.grid[1] as usize * c as usize;
                            assert!(sums <= Buffer::Partial.len(&net), "{sums} SE partial sums");
                        }
                        if let (true, Arg::Int(n), Arg::Ptr(pool, _)) =
                            (l.kernel.is_pointwise(), l.args[5], l.args[l.args.len() - 4])
                        {
                            let sums = l.grid[1] as usize * n as usize;
                            assert!(sums <= pool.len(&net), "{sums} pooled sums");
                        }
                        if let Some(tile) = [&PWW, &PWW16].into_iter().find(|t| t.kernel == l.kernel) {
                            let [Arg::Int(k), Arg::Int(kc)] = [l.args[2], l.args[l.args.len() - 3]] else {
                                panic!("pointwise arguments")
                            };
                            let (k, kc, warps) = (k as usize, kc as usize, l.block[1] as usize);
                            assert!(k <= tile.kmax() && k % 4 == 0 && kc <= tile.kc && kc % 4 == 0, "k {k}, kc {kc}");
                            assert!(warps >= k.div_ceil(kc) && (tile.tm..=PWW_WARPS).contains(&warps), "{l:?}");
                            assert_eq!((l.block[0], l.grid[2]), (32, 1));
                        }
                        if l.kernel.is_pointwise() && l.grid[2] > 1 {
                            let [Arg::Int(m), _, _, _, Arg::Int(n)] =
                                [l.args[1], l.args[2], l.args[3], l.args[4], l.args[5]]
                            else {
                                panic!("pointwise arguments")
                            };
                            let slices = l.grid[2] as usize * (m * n) as usize;
                            assert!(slices <= Buffer::Split.len(&net), "split of {slices} floats");
                            assert!((l.grid[0] * l.grid[1]) as usize <= Buffer::Tickets.len(&net));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pointwise_splits_k_only_where_it_pays() {
        let bn = [Arg::Null; 2];
        let tiled = Target { pointwise_warps: false, ..Target::new(132) };
        let launch = |m, k, n, target| {
            pointwise(Buffer::Io0, m, k, Arg::Null, n, n, bn, 0, None, None, Buffer::Io1, target).remove(0)
        };
        // The max sub-network's last projection (7x7 pixels, k = 1152): 3 large tiles would keep 3
        // of an H100's 132 multiprocessors busy.
        let late = launch(49, 1152, 192, tiled);
        assert_eq!(late.kernel, Kernel::PointwiseSmall);
        assert!(late.grid.iter().product::<u32>() >= 132, "{:?}", late.grid);
        // The first expansion (112x112 pixels, k = 24) has tiles to spare and nothing to split.
        let early = launch(112 * 112, 24, 144, tiled);
        assert_eq!(early.grid[2], 1, "{early:?}");
        // Every slice holds whole PW_BK steps, and the slices cover k exactly.
        // kc, then the split buffer and the tickets, end the arguments.
        let Arg::Int(kc) = late.args[late.args.len() - 3] else { panic!("kc") };
        assert_eq!(kc as u32 % PW_BK, 0);
        assert_eq!((1152_u32).div_ceil(kc as u32), late.grid[2]);
    }

    #[test]
    fn layers_with_few_pixels_take_the_warps_kernel() {
        let bn = [Arg::Null; 2];
        let all =
            |m, k, n| pointwise(Buffer::Io0, m, k, Arg::Null, n, n, bn, 0, None, None, Buffer::Io1, Target::new(132));
        let launch = |m, k, n| all(m, k, n).remove(0);
        // max's first stage-5 projection (7x7 pixels, k = 816): a block per 4 pixels and 32
        // channels, k over 16 warps of 52 channels (on the H100: 5.2 µs, the best tiling 7.8).
        let late = launch(49, 816, 192);
        assert_eq!((late.kernel, late.grid, late.block), (Kernel::PointwiseWarps, [6, 13, 1], [32, 16, 1]));
        assert_eq!(late.args[13], Arg::Int(52));
        // Its expansion (k = 192, 1152 channels) would take 4 rounds of blocks: tiled (6.5 µs
        // against 14.4).
        assert_eq!(launch(49, 192, 1152).kernel, Kernel::PointwiseSmall);
        // A 56x56 map has tiles to spare: the 16-pixel variant is only an alternative, the other
        // not even that. Past kmax input channels would not fit the staging.
        let early = all(56 * 56, 32, 192);
        assert!(early[0].kernel != Kernel::PointwiseWarps16, "{early:?}");
        assert!(early.iter().any(|l| l.kernel == Kernel::PointwiseWarps16), "{early:?}");
        assert!(early.iter().all(|l| l.kernel != Kernel::PointwiseWarps), "{early:?}");
        assert_eq!(PWW.shape(PWW.kmax() + 4), None);
        // Few input channels still make tm warps, one per pixel of the block.
        assert_eq!(PWW.shape(24), Some((16, PWW.tm)));
        assert_eq!(PWW16.shape(24), Some((16, PWW16.tm)));
    }

    #[test]
    fn layers_of_few_tiles_and_long_k_take_the_ksplit_kernel() {
        let bn = [Arg::Null; 2];
        let all =
            |m, k, n| pointwise(Buffer::Io0, m, k, Arg::Null, n, n, bn, 0, None, None, Buffer::Io1, Target::new(132));
        // mid's 6x6 expansions (36 x 192 x 1152, 108 tiles): the whole k in each block, four
        // groups of 3 steps (on the H200: 3.93 µs, the small tiles 6.24).
        let mid = all(36, 192, 1152).remove(0);
        assert_eq!((mid.kernel, mid.grid, mid.block), (Kernel::PointwiseKSplit, [36, 3, 1], [512, 1, 1]));
        assert_eq!(mid.model_us, Some(LAUNCH_US + 3.0 * PWK_STEP_US));
        // max's 56x56 projections (3136 x 192 x 32, 196 tiles): more blocks than multiprocessors,
        // which measurement found slower than the small tiles (7.1 µs) with four groups; offered
        // after the rated ones, unrated, four groups and then two (two blocks a multiprocessor).
        let early = all(56 * 56, 192, 32);
        assert_ne!(early[0].kernel, Kernel::PointwiseKSplit, "{early:?}");
        let ksplit: Vec<_> = early.iter().filter(|l| l.kernel == Kernel::PointwiseKSplit).collect();
        let shapes: Vec<_> = ksplit.iter().map(|l| (l.block[0], l.model_us)).collect();
        assert_eq!(shapes, [(512, None), (256, None)], "{early:?}");
        let unrated = early.iter().position(|l| l.model_us.is_none()).unwrap();
        assert!(early[unrated..].iter().all(|l| l.model_us.is_none()), "{early:?}");
        assert_eq!(early[unrated], *ksplit[0]);
        // Two groups only where the tiles outnumber the multiprocessors (mid's 108 tiles: not).
        assert!(all(36, 192, 1152).iter().all(|l| l.kernel != Kernel::PointwiseKSplit || l.block[0] == 512));
        // Too short a k for four groups of a step each: two where they serve, none for k = 16.
        let short = all(56 * 56, 32, 192);
        assert!(short.iter().any(|l| l.kernel == Kernel::PointwiseKSplit), "{short:?}");
        assert!(short.iter().all(|l| l.kernel != Kernel::PointwiseKSplit || l.block[0] == 256), "{short:?}");
        assert!(all(56 * 56, 16, 192).iter().all(|l| l.kernel != Kernel::PointwiseKSplit));
    }

    #[test]
    fn the_tensor_cores_are_offered_to_measurement_only() {
        let bn = [Arg::Null; 2];
        let all =
            |m, k, n, target| pointwise(Buffer::Io0, m, k, Arg::Null, n, n, bn, 0, None, None, Buffer::Io1, target);
        let mma = |launches: Vec<Launch>| -> Vec<([u32; 3], u32)> {
            let at = launches.iter().position(|l| l.kernel == Kernel::PointwiseMma).unwrap_or(launches.len());
            assert!(launches[at..].iter().all(|l| l.kernel == Kernel::PointwiseMma), "{launches:?}");
            launches[at..].iter().map(|l| (l.grid, l.block[0])).collect()
        };
        let h100 = Target::new(132);
        // max's 7x7 projection of 1152 channels, which the small tiles split in 15 slices of 80: the
        // whole k in blocks of 4 and 8 warps, and the small tiles' slices.
        let late = all(49, 1152, 192, h100);
        let small = late.iter().find(|l| l.kernel == Kernel::PointwiseSmall).unwrap();
        assert!(small.grid[2] > 1, "{small:?}");
        assert_eq!(mma(late.clone()), [([6, 4, 1], 128), ([6, 4, 1], 256), (small.grid, 128)]);
        assert!(late.iter().all(|l| l.kernel != Kernel::PointwiseMma || l.model_us.is_none()));
        // Without a split, the whole k only; each warp a step of 8 channels at least.
        assert_eq!(mma(all(56 * 56, 32, 192, h100)), [([6, 196, 1], 128)]);
        assert_eq!(mma(all(56 * 56, 16, 192, h100)), []);
        // Not where the GPU has no tf32 tensor cores.
        assert_eq!(mma(all(49, 1152, 192, Target { pointwise_mma: false, ..h100 })), []);
    }

    #[test]
    fn depthwise_layers_take_the_region_kernel() {
        let image = GpuImage::new(&SupernetWeights::seeded(Supernet::W1_2, 1));
        // The depthwise kernel of each of a plan's depthwise launches, every layer on its own
        // (no StemBlock).
        let kernels = |cfg: SubnetConfig, region: bool| -> Vec<Kernel> {
            let target = Target { fused: false, depthwise_region: region, ..Target::new(132) };
            let plan = image.plan(&cfg, target);
            plan.iter().map(|l| l.kernel).filter(|k| matches!(k, Kernel::Depthwise | Kernel::DepthwiseRegion)).collect()
        };
        for cfg in [SubnetConfig::uniform(7, 6, 4, 224), SubnetConfig::uniform(3, 3, 2, 160)] {
            let (with, without) = (kernels(cfg, true), kernels(cfg, false));
            assert_eq!(with.len(), without.len());
            assert!(with.iter().all(|&k| k == Kernel::DepthwiseRegion), "{with:?}");
            assert!(without.iter().all(|&k| k == Kernel::Depthwise), "{without:?}");
        }
    }

    #[test]
    fn early_blocks_offer_the_expansion_and_the_depthwise_layer_fused() {
        let image = GpuImage::new(&SupernetWeights::seeded(Supernet::W1_2, 1));
        for (cfg, launches, fused) in [
            // w1.2's blocks of 24 to 48 input channels fit every region (units 1 and 2, unit 3's
            // first), those of 96 and more none; the stem and the first block are one launch.
            (SubnetConfig::uniform(7, 6, 4, 224), 88, 8),
            (SubnetConfig::uniform(3, 3, 2, 160), 46, 5),
        ] {
            let steps = image.steps(&cfg, Target::new(132));
            let plan = image.plan(&cfg, Target::new(132));
            let count = |k| plan.iter().filter(|l| l.kernel == k).count();
            // The plan runs the layers apart; the fused kernel is each such step's last alternative.
            assert_eq!((plan.len(), count(Kernel::ExpandDepthwise), count(Kernel::StemBlock)), (launches, 0, 1));
            let unfused = image.plan(&cfg, Target { fused: false, ..Target::new(132) });
            assert_eq!(unfused.len(), launches + 2, "{cfg:?}");
            let first_fused = |s: &Step| s.alternatives.iter().position(|a| a[0].kernel == Kernel::ExpandDepthwise);
            let fusing: Vec<(&Step, usize)> = steps.iter().filter_map(|s| Some((s, first_fused(s)?))).collect();
            assert_eq!(fusing.len(), fused, "{cfg:?}");
            for (step, at) in fusing {
                let l = &step.alternatives[at][0];
                let [Arg::Int(input), Arg::Int(k), Arg::Int(stride)] = [l.args[2], l.args[11], l.args[12]] else {
                    panic!("ExpandDepthwise arguments")
                };
                let (input, k, stride) = (input as usize, k as usize, stride as usize);
                assert!((region_pixels(k, stride) + DW_CH as usize) * input <= EDW_FLOATS, "{l:?}");
                // Before it, every combination of the separate launches.
                let apart = &step.alternatives[..at];
                assert!(apart.len() >= 2 && apart.iter().all(|a| a[0].kernel.is_pointwise() && a.len() >= 2));
            }
        }
    }
    #[test]
    fn blocks_without_se_offer_the_depthwise_layer_and_the_projection_fused() {
        let image = GpuImage::new(&SupernetWeights::seeded(Supernet::W1_2, 1));
        // The first unit (no SE, 32 output channels): its blocks, the first of stride 2; unit 3's
        // (no SE, 96 channels) have too many output channels.
        for (cfg, blocks) in [(SubnetConfig::uniform(7, 6, 4, 224), 4), (SubnetConfig::uniform(3, 3, 2, 160), 2)] {
            let plan = image.plan(&cfg, Target::new(132));
            assert!(plan.iter().all(|l| l.kernel != Kernel::DepthwiseProject), "measurement's only");
            let steps = image.steps(&cfg, Target::new(132));
            let fusing: Vec<&Step> = steps
                .iter()
                .filter(|s| s.alternatives.iter().flatten().any(|l| l.kernel == Kernel::DepthwiseProject))
                .collect();
            assert_eq!(fusing.len(), blocks, "{cfg:?}");
            for (i, step) in fusing.into_iter().enumerate() {
                // Last, each expansion with it; before, the depthwise and projection launches apart.
                let last = step.alternatives.last().unwrap();
                assert!(last.len() == 2 && last[0].kernel.is_pointwise() && last[1].kernel == Kernel::DepthwiseProject);
                let l = &last[1];
                let [Arg::Int(stride), Arg::Int(osize), Arg::Int(n)] = [l.args[6], l.args[7], l.args[13]] else {
                    panic!("DepthwiseProject arguments")
                };
                assert_eq!((stride, n), (if i == 0 { 2 } else { 1 }, 32));
                assert!(matches!(l.args[2], Arg::Int(c) if c % 4 == 0), "{l:?}");
                let (osize, s) = (osize as usize, stride as usize);
                assert_eq!(l.grid[1] as usize, osize.div_ceil(DP_ROWS) * osize.div_ceil(DP_COLS[s - 1]));
                assert!(step.alternatives.iter().any(|a| a.iter().any(|l| l.kernel == Kernel::DepthwiseRegion)
                    && a.last().unwrap().kernel.is_pointwise()));
            }
            let apart = image.steps(&cfg, Target { fused: false, ..Target::new(132) });
            assert!(
                apart
                    .iter()
                    .flat_map(|s| s.alternatives.iter().flatten())
                    .all(|l| l.kernel != Kernel::DepthwiseProject)
            );
        }
    }

    /// Measured / estimated for the pointwise launches of `docs/data/<file>` (a bench's
    /// `--launches` CSV) that `model` rates (from the kernel's name, the warps per block and
    /// `[m, k, n, kc]`), in order.
    fn model_ratios(file: &str, model: impl Fn(&str, usize, [usize; 4]) -> Option<f64>) -> Vec<f64> {
        let path = format!("{}/../docs/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut ratios = Vec::new();
        for row in text.lines().skip(1) {
            let cells: Vec<&str> = row.split(',').collect();
            let [_, _, kernel, _, block, ints, _, measured] = cells[..] else { panic!("{path}: {row}") };
            let [m, k, _, n, _, kc] = ints.split(' ').map(|v| v.parse().unwrap()).collect::<Vec<usize>>()[..] else {
                continue; // not a pointwise launch
            };
            let warps = block.split('x').nth(1).unwrap().parse().unwrap();
            if let Some(us) = model(kernel, warps, [m, k, n, kc]) {
                ratios.push(measured.parse::<f64>().unwrap() / us);
            }
        }
        ratios.sort_by(f64::total_cmp);
        ratios
    }

    #[test]
    fn the_pointwise_models_estimate_the_h100s_launches() {
        // Every pointwise launch of the H100 run the constants were fitted to (each plan variant
        // of max, mid and min), re-estimated by today's models for 132 multiprocessors. Changing a
        // constant without refitting (docs/gpu.md, "Tuning") fails here.
        let ratios = model_ratios("gpu-launches-h100.csv", |kernel, warps, [m, k, n, kc]| match kernel {
            "dynofa_pointwise" => Some(PW_LARGE.micros(m, k, n, kc, 132)),
            "dynofa_pointwise_small" => Some(PW_SMALL.micros(m, k, n, kc, 132)),
            "dynofa_pointwise_warps" => Some(PWW.micros(m, k, n, warps, 132)),
            "dynofa_pointwise_warps16" => Some(PWW16.micros(m, k, n, warps, 132)),
            _ => None,
        });
        assert!(ratios.len() > 400, "{} pointwise launches", ratios.len());
        let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q) as usize];
        // Measured / estimated: the median near 1, and 4 in 5 launches within 25 %.
        assert!((0.95..=1.05).contains(&at(0.5)), "median {:.2}", at(0.5));
        assert!(at(0.1) >= 0.75 && at(0.9) <= 1.25, "10th {:.2}, 90th {:.2} percentile", at(0.1), at(0.9));
    }

    #[test]
    fn the_ksplit_model_estimates_the_h200s_launches() {
        // The PointwiseKSplit launches that measurement picked on the H200 (the tuned plans),
        // which PWK_STEP_US was fitted to, re-estimated where the model rates them.
        let ratios = model_ratios("gpu-launches-h200.csv", |kernel, _, [m, k, n, kc]| {
            ksplit_micros(m, k, n, 132).filter(|_| kernel == "dynofa_pointwise_ksplit" && k <= kc)
        });
        assert!(ratios.len() >= 20, "{} PointwiseKSplit launches", ratios.len());
        let median = ratios[ratios.len() / 2];
        assert!((0.95..=1.05).contains(&median), "median {median:.2}");
        assert!(ratios[0] >= 0.9 && ratios[ratios.len() - 1] <= 1.1, "{ratios:?}");
    }
}
