// dynofa's CUDA kernels: one OFA MobileNetV3 sub-network, run in place on the supernet's weights.
//
// Activations are NHWC, fp32. Weights are read where they lie in the supernet layout: a sub-network
// uses the first `n` output and first `k` input channels of each layer, so every weight argument
// carries its supernet leading dimension (`ldw`) and nothing is copied to switch sub-networks.
// Layouts (built by dynofa-kernels' gpu::image): 1x1 convolutions `[k_max][n_max]` (input-major, so
// threads along output channels read contiguous memory); depthwise taps `[k*k][c_max]`; the fully
// connected layers (SE, feature mix, classifier) in OFA's `[out][in]`.
//
// The same source compiles under NVRTC and, through emulate.h, as host C++ (the emulated tests), so
// it uses only: blockIdx/threadIdx/blockDim/gridDim, __shared__ arrays, __syncthreads (reached by
// every thread of a block) and bar.sync (dyn_sync), fminf/fmaxf, float4 and float2 (aligned loads
// of float buffers), __ldca and __ldcg (ld_w, ld_act), for split GEMMs atomicAdd on a ticket
// counter and __threadfence, on sm_90 the griddepcontrol instructions (DYNOFA_WAIT_PREVIOUS), and
// for the persistent kernel dynamic shared memory, its barrier's atomicAdd or red.release,
// volatile or ld.acquire polls and __trap, the global timer (its trace), and on sm_80 and newer
// mma.sync (dyn_mma: a warp's tensor-core product) with __float_as_uint and __uint_as_float for
// its operands. No warp shuffles, and no sum depends on the order in which blocks or warps run:
// results are deterministic.

// The tile sizes (PW_*, PWS_*, PWW_*, DW_*, DWR_*, MV_*), the persistent kernel's (DYN_*) and
// the kernels' numbers (DYNOFA_KID_*) are defined by the launch plan (dynofa-kernels' gpu module),
// which prepends them to this source, so the plan and the kernels cannot disagree.
#if !defined(PW_BM) || !defined(DW_ROWS) || !defined(MV_ROWS) || !defined(DYN_SLOTS)
#error "compile this source through dynofa_kernels::gpu::source(), which defines the tile sizes"
#endif

// Programmatic dependent launch (sm_90 and newer, when the engine launches with it): a kernel's
// blocks may be scheduled while the kernel before it finishes. Every kernel loads what no kernel
// writes (weights, BN) first, then waits for the previous kernel's results (and memory) before it
// reads activations (waiting for the previous kernel waits for every kernel before it), and lets
// the next one be scheduled once its main loop is done. Without such a launch, on older GPUs and
// in the host emulation these are nothing (the emulation notes the wait: ld_w, ld_act). ptxas moves
// the wait above read-only (.nc) loads, so the kernels issue none: their loads (ld_w, ld_act) stay
// on the side of the wait where the source puts them (docs/gpu.md, "Where the kernels wait";
// scripts/gpu/sass.py shows it, hal-jetson/tests/nvrtc.rs checks it).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define DYNOFA_LAUNCH_DEPENDENTS() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#define DYNOFA_WAIT_PREVIOUS() asm volatile("griddepcontrol.wait;" ::: "memory")
#else
#define DYNOFA_LAUNCH_DEPENDENTS()
#define DYNOFA_WAIT_PREVIOUS()
#endif

// sum_{t < n} p[t * stride], added in the order t = 0, 1, ... (deterministic) with up to 8 loads in
// flight (one dependent load per element was the cost).
__device__ __forceinline__ float dynofa_sum_strided(const float* p, long stride, int n) {
    float sum = 0.0f;
    for (int t0 = 0; t0 < n; t0 += 8) {
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) v[u] = t0 + u >= n ? 0.0f : p[(t0 + u) * stride];
#pragma unroll
        for (int u = 0; u < 8; ++u) sum += v[u];
    }
    return sum;
}

// Activation codes, as the launch plan passes them.
#define ACT_IDENTITY 0
#define ACT_RELU 1
#define ACT_HSWISH 2
#define ACT_HSIGMOID 3

__device__ __forceinline__ float dynofa_act(float v, int act) {
    // `x * relu6(x + 3) / 6` with a multiply by 1/6, as the CPU engine computes it.
    float h = fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
    switch (act) {
    case ACT_RELU:
        return fmaxf(v, 0.0f);
    case ACT_HSWISH:
        return v * h;
    case ACT_HSIGMOID:
        return h;
    default:
        return v;
    }
}

// Where a block is in its launch: what the kernels' bodies read in place of blockIdx, gridDim,
// threadIdx and blockDim, so that two drivers can run them. A graph launches each kernel, whose
// body sees the hardware's indices (HwBlock); dynofa_persistent (below) runs every launch of a plan
// in one cooperative launch, each of its blocks running launch blocks, several at once
// (PersistentBlock), with a barrier across the GPU between launches. Blocks are (dx, dy, 1) in
// every plan. The bodies are templates on the two, so that a graph's kernels read the hardware's
// registers where they did before (ptxas gave one 26 more registers when they read a struct).
#define DYN_INDICES(X) X(bx, blockIdx.x) X(by, blockIdx.y) X(bz, blockIdx.z) X(gx, gridDim.x) X(gy, gridDim.y) \
    X(gz, gridDim.z) X(tx, threadIdx.x) X(ty, threadIdx.y) X(dx, blockDim.x) X(dy, blockDim.y)
struct HwBlock {
    // Loads in flight where a loop can choose: a split's slices (pointwise_tile), and the steps
    // that dynofa_pointwise_mma's warps load ahead.
    static constexpr int SPLIT_LOADS = 32, MMA_AHEAD = 4;
#define DYN_HW(name, value) \
    __device__ __forceinline__ unsigned name() const { return value; }
    DYN_INDICES(DYN_HW)
#undef DYN_HW
};
// Named barriers 1 to 15 (dyn_sync) are those of the launch blocks that a persistent block runs at
// once (its groups).
#define DYN_MAX_GROUPS 15u
// The barrier between launches, as a persistent block's groups share it (in its shared memory):
// the arrivals, the trace (null: none; group 0 notes in it), how it is ordered (dyn_arrive), and
// the most arrivals that each group's thread 0 has seen.
struct DynBarrier {
    unsigned* arrived;
    unsigned long long* trace;
    bool release_acquire;
    unsigned seen[DYN_MAX_GROUPS];
};
struct PersistentBlock {
    // Fewer than a graph's kernels: its 128 registers a thread are every body's, and nvrtc.rs
    // bounds its spills (on sm_90 MMA_AHEAD = 2 took its spill loads to 1,548 bytes, 1 to 1,332).
    static constexpr int SPLIT_LOADS = 16, MMA_AHEAD = 1;
    unsigned index[10];  // in DYN_INDICES' order
#define DYN_FIELD(name, value) DYN_FIELD_##name,
    enum { DYN_INDICES(DYN_FIELD) };
#undef DYN_FIELD
#define DYN_GET(name, value) \
    __device__ __forceinline__ unsigned name() const { return index[DYN_FIELD_##name]; }
    DYN_INDICES(DYN_GET)
#undef DYN_GET
    // Which of the launch blocks that the physical block runs at once this is (its named barrier),
    // and the arrivals that mean the launch before is done everywhere.
    unsigned group, target;
    DynBarrier* barrier;
};

// __syncthreads for the launch's block: in dynofa_persistent its group's named barrier (1 + group;
// 0 is __syncthreads') of its dx * dy threads (a multiple of 32: the plan checks).
__device__ __forceinline__ void dyn_sync(const HwBlock&) { __syncthreads(); }
__device__ __forceinline__ void dyn_sync(const PersistentBlock& b) {
#ifdef __CUDA_ARCH__
    asm volatile("bar.sync %0, %1;" ::"r"(1 + b.group), "r"(b.dx() * b.dy()) : "memory");
#else
    dynofa_emu::sync_named(1 + b.group, b.dx() * b.dy());
#endif
}

// Shared memory that each block has its own of (the host emulation runs dynofa_persistent's blocks
// together, each with its own), and its dynamic shared memory: `name`, dyn_shared_bytes() long.
#ifndef DYN_BLOCK_SHARED
#define DYN_BLOCK_SHARED(T, name, n) __shared__ T name[n]
#define DYN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
__device__ __forceinline__ unsigned dyn_shared_bytes() {
    unsigned n;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(n));
    return n;
}
#endif

// Polls of the persistent barrier before giving up (seconds at any clock): a trap fails the
// launch, which the host sees as an error, where a lost arrival would otherwise hang the GPU.
#define DYN_SPINS (1u << 24)
// What a poll does between reads: nothing on a GPU; the host emulation lets other blocks run.
#ifndef DYN_SPIN_PAUSE
#define DYN_SPIN_PAUSE()
#endif

// What the host emulation checks of the loads (ld_w, ld_act below): each read, each wait, and each
// launch block's start in dynofa_persistent. Nothing on a GPU.
#ifndef DYN_EMU_READS
#define DYN_EMU_READS(p, weight)
#define DYN_EMU_WAITED()
#define DYN_EMU_BODY()
#endif

// Nanoseconds on a clock that every multiprocessor shares (the persistent kernel's trace); the host
// emulation counts the reads instead.
#ifdef __CUDA_ARCH__
__device__ __forceinline__ unsigned long long dyn_now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#else
static inline unsigned long long dyn_now() { return dynofa_emu::now(); }
#endif

// A barrier's two sides, ordered by fences around a plain add and poll, or with `release_acquire`
// by the add and the poll themselves (red.release and ld.acquire at GPU scope), which may cost
// less: GpuEngine::grid_barrier times both. Those instructions need sm_70; below it (and in the
// host emulation) `release_acquire` takes the fences too.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
#define DYN_RELEASE_ACQUIRE 1
#else
#define DYN_RELEASE_ACQUIRE 0
#endif
// Arrive: every write of this block before it (behind a barrier of the block) is visible to a
// block that sees the arrival.
__device__ __forceinline__ void dyn_arrive(unsigned* arrived, bool release_acquire) {
#if DYN_RELEASE_ACQUIRE
    if (release_acquire) {
        asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(arrived), "r"(1u) : "memory");
        return;
    }
#endif
    __threadfence();
    atomicAdd(arrived, 1u);
}
// One read of the arrivals; after the read that saw enough, dyn_acquired.
__device__ __forceinline__ unsigned dyn_poll(unsigned* arrived, bool release_acquire) {
#if DYN_RELEASE_ACQUIRE
    if (release_acquire) {
        unsigned v;
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(arrived) : "memory");
        return v;
    }
#endif
    return *(volatile unsigned*)arrived;
}
__device__ __forceinline__ void dyn_acquired(bool release_acquire) {
    if (!DYN_RELEASE_ACQUIRE || !release_acquire) __threadfence();
}

// Thread 0 of a group (or of the physical block) waits until `arrived` reaches `target`, once per
// target (`seen`: its own, so that every thread that lets others read has polled and fenced itself),
// and notes when in `trace[0]` (if not null). Every other thread reads behind a barrier that
// follows it.
__device__ __forceinline__ void dyn_await(unsigned* arrived, unsigned target, unsigned* seen,
                                          unsigned long long* trace, bool release_acquire) {
    if (*seen >= target) return;
    for (unsigned spins = 0; dyn_poll(arrived, release_acquire) < target; ++spins) {
        if (spins == DYN_SPINS) __trap();
        DYN_SPIN_PAUSE();
    }
    dyn_acquired(release_acquire);
    *seen = target;
    if (trace) trace[0] = dyn_now();
}

// Before a kernel reads what the previous launch wrote (it has loaded what no launch writes):
// griddepcontrol.wait in a graph, the barrier in dynofa_persistent.
__device__ __forceinline__ void dyn_wait(const HwBlock&) {
    DYNOFA_WAIT_PREVIOUS();
    DYN_EMU_WAITED();
}
__device__ __forceinline__ void dyn_wait(const PersistentBlock& b) {
    if (b.tx() == 0 && b.ty() == 0) {
        DynBarrier& w = *b.barrier;
        unsigned long long* noted = b.group == 0 && w.trace ? w.trace + (b.target + blockIdx.x) * 2ull : nullptr;
        dyn_await(w.arrived, b.target, &w.seen[b.group], noted, w.release_acquire);
    }
    dyn_sync(b);
    DYN_EMU_WAITED();
}

// A vector access at p must be aligned to its size: a GPU faults otherwise, and the host emulation,
// which would not, traps.
__device__ __forceinline__ void dyn_aligned(const void* p, unsigned bytes) {
#ifndef __CUDA_ARCH__
    if (reinterpret_cast<unsigned long long>(p) % bytes != 0) __trap();
#endif
}

// The kernels' global loads, named by what they read; they issue no others. ld_w: what no launch
// writes (weights, BN), before the wait where it can be, through the multiprocessor's cache
// (ld.global.ca). ld_act: what an earlier launch wrote (activations, SE sums, gates, a split's
// slices), after the wait only, from L2 (ld.global.cg: coherent across the GPU, as
// dynofa_persistent needs where an earlier launch in the same kernel wrote it). Neither is a
// read-only (.nc) load, which ptxas moves the wait above: a weight written before the wait then
// loaded after it, and an activation written after it could load before it, a race
// (docs/gpu.md, "Where the kernels wait"; hal-jetson/tests/nvrtc.rs checks the machine code). The
// host emulation fails a launch with an ld_w outside the weights and BN, or an ld_act before the
// wait (DYN_EMU_READS, above).
// T: float, or float2 or float4 (p aligned to its size).
template <class T = float>
__device__ __forceinline__ T ld_w(const float* p) {
    DYN_EMU_READS(p, true);
    dyn_aligned(p, sizeof(T));
    return __ldca(reinterpret_cast<const T*>(p));
}
template <class T = float>
__device__ __forceinline__ T ld_act(const float* p) {
    DYN_EMU_READS(p, false);
    dyn_aligned(p, sizeof(T));
    return __ldcg(reinterpret_cast<const T*>(p));
}
// v = p[0 .. 4) or p[0 .. 2) of activations in one load.
__device__ __forceinline__ void ld_act_vec(const float* p, float (&v)[4]) {
    float4 q = ld_act<float4>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
__device__ __forceinline__ void ld_act_vec(const float* p, float (&v)[2]) {
    float2 q = ld_act<float2>(p);
    v[0] = q.x, v[1] = q.y;
}
// v = p[0 .. 4) or p[0 .. 2) of shared memory in one load, and global p[0 ..) = v in one store.
__device__ __forceinline__ void ld_vec(const float* p, float (&v)[4]) {
    dyn_aligned(p, 16);
    float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
__device__ __forceinline__ void ld_vec(const float* p, float (&v)[2]) {
    dyn_aligned(p, 8);
    float2 q = *reinterpret_cast<const float2*>(p);
    v[0] = q.x, v[1] = q.y;
}
__device__ __forceinline__ void st_vec(float* p, const float (&v)[4]) {
    dyn_aligned(p, 16);
    *reinterpret_cast<float4*>(p) = float4{v[0], v[1], v[2], v[3]};
}
__device__ __forceinline__ void st_vec(float* p, const float (&v)[2]) {
    dyn_aligned(p, 8);
    *reinterpret_cast<float2*>(p) = float2{v[0], v[1]};
}

// first_conv: 3x3, stride 2, padding 1 over the NCHW image `in` ([3][r][r]) + BN + h_swish into
// NHWC `out` ([o][o][c]). A thread computes STEM_CH channels of a pixel (c is a multiple; the plan
// checks it), so that a pixel's 27 inputs are loaded once for them; `w` is `[27][ldw]` with rows
// ci*9 + dy*3 + dx. No shared memory (`NoShared`: every body takes its shared memory as an argument).
struct NoShared {};
template <class B>
__device__ __forceinline__ void stem(const B& b, NoShared*, const float* __restrict__ in, int r, int o,
                                     const float* __restrict__ w, int ldw, int c, const float* __restrict__ scale,
                                     const float* __restrict__ shift, float* __restrict__ out) {
    // The first kernel: it follows the input copy, never a kernel, so its wait costs nothing.
    DYNOFA_LAUNCH_DEPENDENTS();
    dyn_wait(b);
    int groups = c / STEM_CH, idx = b.bx() * b.dx() + b.tx();
    if (idx >= o * o * groups) return;
    int ch0 = idx % groups * STEM_CH, p = idx / groups;
    int oy = p / o, ox = p % o;
    float acc[STEM_CH];
#pragma unroll
    for (int j = 0; j < STEM_CH; ++j) acc[j] = 0.0f;
#pragma unroll
    for (int t = 0; t < 27; ++t) {
        int ci = t / 9, dy = t / 3 % 3, dx = t % 3;
        int iy = 2 * oy + dy - 1, ix = 2 * ox + dx - 1;
        if (iy < 0 || iy >= r || ix < 0 || ix >= r) continue;
        float x = ld_act(&in[(ci * r + iy) * r + ix]);
#pragma unroll
        for (int j = 0; j < STEM_CH; ++j) acc[j] += x * ld_w(&w[t * ldw + ch0 + j]);
    }
#pragma unroll
    for (int j = 0; j < STEM_CH; ++j)
        out[(long)p * c + ch0 + j] = dynofa_act(acc[j] * ld_w(&scale[ch0 + j]) + ld_w(&shift[ch0 + j]), ACT_HSWISH);
}

extern "C" __global__ void dynofa_stem(const float* __restrict__ in, int r, int o, const float* __restrict__ w,
                                       int ldw, int c, const float* __restrict__ scale,
                                       const float* __restrict__ shift, float* __restrict__ out) {
    stem(HwBlock(), nullptr, in, r, o, w, ldw, c, scale, shift, out);
}

// The stem and the first block in one kernel, for an SB_TILE x SB_TILE tile of the s x s map per
// block: first_conv + BN + h_swish over the tile and a ring of one pixel (zeros outside the map:
// the depthwise padding), the depthwise 3x3 + BN + ReLU, then the 1x1 `[c][ldwp]` + BN (no
// activation) with the stem's output added where `residual`, into NHWC `out` ([s][s][c1]). Three
// launches with their round trips through memory were 6.8 µs (min) to 11 µs (max) on an H100;
// every stage here reads shared memory. c and c1 are multiples of 4, at most SB_CH (the plan
// checks); weights as dynofa_stem, dynofa_depthwise and dynofa_pointwise take them; the sums run in
// their order. The first kernel, like dynofa_stem: it follows the input copy, never a kernel (its
// wait costs nothing).
// Input patch ([3][IR][IR]), weights and BN ([row][SB_CH], rows: 27 stem, 9 taps, c 1x1, 6 BN),
// the stem's ring ([SR * SR][SB_CH]) and the depthwise tile ([SB_TILE^2][SB_CH]).
struct StemBlockShared {
    static constexpr int SR = SB_TILE + 2, IR = 2 * SR + 1, Q = SB_CH / 4;
    static constexpr int PATCH = 3 * IR * IR, WROWS = 27 + 9 + SB_CH + 6;
    float xin[PATCH];
    float4 wq[WROWS * Q];
    float4 st[SR * SR * Q];
    float4 dq[SB_TILE * SB_TILE * Q];
};
template <class B>
__device__ __forceinline__ void stem_block(const B& b, StemBlockShared* shm, const float* __restrict__ in,
                                           int r, int s, const float* __restrict__ ws, int ldws, int c,
                                           const float* __restrict__ s_scale, const float* __restrict__ s_shift,
                                           const float* __restrict__ wd, int ldwd,
                                           const float* __restrict__ d_scale, const float* __restrict__ d_shift,
                                           const float* __restrict__ wp, int ldwp, int c1,
                                           const float* __restrict__ p_scale, const float* __restrict__ p_shift,
                                           int residual, float* __restrict__ out) {
    constexpr int SR = StemBlockShared::SR, IR = StemBlockShared::IR, Q = StemBlockShared::Q;
    constexpr int PATCH = StemBlockShared::PATCH, WROWS = StemBlockShared::WROWS;
    float* xin = shm->xin;
    float4 *wq = shm->wq, *st = shm->st, *dq = shm->dq;
    DYNOFA_LAUNCH_DEPENDENTS();
    int tid = b.tx(), per_row = (s + SB_TILE - 1) / SB_TILE;
    int y0 = b.bx() / per_row * SB_TILE, x0 = b.bx() % per_row * SB_TILE;
    // Every load in flight before any store: one round trip to memory.
    constexpr int PLOADS = (PATCH + SB_THREADS - 1) / SB_THREADS;
    constexpr int WLOADS = (WROWS * SB_CH + SB_THREADS - 1) / SB_THREADS;
    float pv[PLOADS], wv[WLOADS];
#pragma unroll
    for (int l = 0; l < WLOADS; ++l) {
        int e = tid + l * SB_THREADS, row = e / SB_CH, ch = e % SB_CH;
        const float* src = row < 27 ? ws + row * ldws
                         : row < 36 ? wd + (row - 27) * ldwd
                         : row < 36 + SB_CH ? wp + (row - 36) * ldwp
                         : row == 36 + SB_CH ? s_scale
                         : row == 37 + SB_CH ? s_shift
                         : row == 38 + SB_CH ? d_scale
                         : row == 39 + SB_CH ? d_shift
                         : row == 40 + SB_CH ? p_scale
                                             : p_shift;
        // Stem and depthwise rows have c columns, the 1x1 rows c1 (and c of them), BN rows theirs.
        int cols = row < 36 || (row >= 36 + SB_CH && row < 40 + SB_CH) ? c : c1;
        bool real = e < WROWS * SB_CH && ch < cols && (row < 36 || row >= 36 + SB_CH || row - 36 < c);
        wv[l] = real ? ld_w(&src[ch]) : 0.0f;
    }
    dyn_wait(b);
#pragma unroll
    for (int l = 0; l < PLOADS; ++l) {
        int e = tid + l * SB_THREADS, ci = e / (IR * IR), yy = e / IR % IR, xx = e % IR;
        int iy = 2 * (y0 - 1) - 1 + yy, ix = 2 * (x0 - 1) - 1 + xx;
        pv[l] = e < PATCH && iy >= 0 && iy < r && ix >= 0 && ix < r ? ld_act(&in[(ci * r + iy) * r + ix]) : 0.0f;
    }
#pragma unroll
    for (int l = 0; l < PLOADS; ++l)
        if (tid + l * SB_THREADS < PATCH) xin[tid + l * SB_THREADS] = pv[l];
    float* wf = reinterpret_cast<float*>(wq);
#pragma unroll
    for (int l = 0; l < WLOADS; ++l)
        if (tid + l * SB_THREADS < WROWS * SB_CH) wf[tid + l * SB_THREADS] = wv[l];
    dyn_sync(b);
    const float4* stem_w = wq;
    const float4* taps = wq + 27 * Q;
    const float4* pw = wq + 36 * Q;
    const float4* bn = wq + (36 + SB_CH) * Q;
    int cq = c / 4, c1q = c1 / 4;

    // The stem over the tile and its ring, 4 channels per item.
    for (int e = tid; e < SR * SR * cq; e += SB_THREADS) {
        int p = e / cq, q = e % cq, py = p / SR, px = p % SR;
        int sy = y0 - 1 + py, sx = x0 - 1 + px;
        float4 v = float4{0.0f, 0.0f, 0.0f, 0.0f};
        if (sy >= 0 && sy < s && sx >= 0 && sx < s) {
            float4 acc = v;
#pragma unroll
            for (int t = 0; t < 27; ++t) {
                float x = xin[(t / 9 * IR + 2 * py + t / 3 % 3) * IR + 2 * px + t % 3];
                float4 w = stem_w[t * Q + q];
                acc.x += x * w.x;
                acc.y += x * w.y;
                acc.z += x * w.z;
                acc.w += x * w.w;
            }
            float4 sc = bn[q], sh = bn[Q + q];
            v.x = dynofa_act(acc.x * sc.x + sh.x, ACT_HSWISH);
            v.y = dynofa_act(acc.y * sc.y + sh.y, ACT_HSWISH);
            v.z = dynofa_act(acc.z * sc.z + sh.z, ACT_HSWISH);
            v.w = dynofa_act(acc.w * sc.w + sh.w, ACT_HSWISH);
        }
        st[p * Q + q] = v;
    }
    dyn_sync(b);

    // The depthwise 3x3 over the tile, rows then columns as dynofa_depthwise sums them.
    for (int e = tid; e < SB_TILE * SB_TILE * cq; e += SB_THREADS) {
        int p = e / cq, q = e % cq, ty = p / SB_TILE, tx = p % SB_TILE;
        float4 acc = float4{0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int t = 0; t < 9; ++t) {
            float4 x = st[((ty + t / 3) * SR + tx + t % 3) * Q + q], w = taps[t * Q + q];
            acc.x += x.x * w.x;
            acc.y += x.y * w.y;
            acc.z += x.z * w.z;
            acc.w += x.w * w.w;
        }
        float4 sc = bn[2 * Q + q], sh = bn[3 * Q + q];
        dq[p * Q + q] = float4{dynofa_act(acc.x * sc.x + sh.x, ACT_RELU), dynofa_act(acc.y * sc.y + sh.y, ACT_RELU),
                               dynofa_act(acc.z * sc.z + sh.z, ACT_RELU), dynofa_act(acc.w * sc.w + sh.w, ACT_RELU)};
    }
    dyn_sync(b);

    // The 1x1 + BN, the stem's output added, 4 output channels per item.
    const float* df = reinterpret_cast<const float*>(dq);
    for (int e = tid; e < SB_TILE * SB_TILE * c1q; e += SB_THREADS) {
        int p = e / c1q, q = e % c1q, ty = p / SB_TILE, tx = p % SB_TILE;
        if (y0 + ty >= s || x0 + tx >= s) continue;
        float4 acc = float4{0.0f, 0.0f, 0.0f, 0.0f};
        for (int i = 0; i < c; ++i) {
            float x = df[p * SB_CH + i];
            float4 w = pw[i * Q + q];
            acc.x += x * w.x;
            acc.y += x * w.y;
            acc.z += x * w.z;
            acc.w += x * w.w;
        }
        float4 sc = bn[4 * Q + q], sh = bn[5 * Q + q];
        float4 v = float4{acc.x * sc.x + sh.x, acc.y * sc.y + sh.y, acc.z * sc.z + sh.z, acc.w * sc.w + sh.w};
        if (residual) {
            float4 x = st[((ty + 1) * SR + tx + 1) * Q + q];
            v.x += x.x;
            v.y += x.y;
            v.z += x.z;
            v.w += x.w;
        }
        reinterpret_cast<float4*>(out + ((long)(y0 + ty) * s + x0 + tx) * c1)[q] = v;
    }
}

extern "C" __global__ void __launch_bounds__(SB_THREADS)
    dynofa_stem_block(const float* __restrict__ in, int r, int s, const float* __restrict__ ws, int ldws, int c,
                      const float* __restrict__ s_scale, const float* __restrict__ s_shift,
                      const float* __restrict__ wd, int ldwd, const float* __restrict__ d_scale,
                      const float* __restrict__ d_shift, const float* __restrict__ wp, int ldwp, int c1,
                      const float* __restrict__ p_scale, const float* __restrict__ p_shift, int residual,
                      float* __restrict__ out) {
    __shared__ StemBlockShared shm;
    stem_block(HwBlock(), &shm, in, r, s, ws, ldws, c, s_scale, s_shift, wd, ldwd, d_scale, d_shift, wp, ldwp, c1,
               p_scale, p_shift, residual, out);
}

// Every 1x1 kernel's arguments (the same for all, so that a step's alternatives are interchangeable).
#define DYNOFA_POINTWISE_PARAMS                                                                            \
    const float *__restrict__ a, int m, int k, const float *__restrict__ w, int ldw, int n,               \
        const float *__restrict__ scale, const float *__restrict__ shift, int act,                        \
        const float *__restrict__ gate, const float *__restrict__ res, float *__restrict__ out,           \
        float *__restrict__ pool, int kc, float *__restrict__ split, unsigned *__restrict__ tickets
#define DYNOFA_POINTWISE_ARGS a, m, k, w, ldw, n, scale, shift, act, gate, res, out, pool, kc, split, tickets

// A 1x1 convolution as a GEMM: out[p][o] = act(bn(sum_i a[p][i] * gate[i] * w[i][o])) + res[p][o]
// for p < m, o < n, i < k; `a`, `out` and `res` are dense ([m][k], [m][n]), `w` is `[k][ldw]`.
// `gate` (the SE excitation of the projection's input, `[k]`) and `res` may be null. With `pool`,
// each block also writes the sums of its output tile's columns over its pixels to
// pool[blockIdx.y][n] (the head's average pool, finished in dynofa_matvec). Tiles of BM pixels x BN
// channels, PW_BK input channels at a time, TM x TN per thread.
//
// Late layers have few pixels and long k (7x7 pixels, k = 1152): their few output tiles would leave
// most of the GPU idle, so the plan may split k over gridDim.z slices of `kc` channels. A block then
// writes its partial tile to `split` ([z][m][n]) and takes a ticket; the tile's last block (every
// slice's writes fenced before its ticket) sums the slices in the order z = 0, 1, ... (the result
// does not depend on which block came last), applies the epilogue and returns the ticket counter
// to 0 for the next launch. `tickets` holds one counter per output tile, zeroed at allocation.
//
// With KS > 1 the block is up to KS groups of THREADS threads on the same output tile (as many as
// blockDim.x holds: the plan launches 2 or KS), whose sums meet in group 0, which alone finishes
// the tile. The product (PwProduct) runs on the CUDA cores, or with MMA on the tensor cores.

// Where a block works: its output tile (pixels from m0, channels from n0), its slice [sbeg, send)
// of k, and its `groups` groups of THREADS threads, this thread `tid` of group `group`, whose
// outputs are pixels m0 + ty * TM + i and channels n0 + tx * TN + j (tx = tid % (BN / TN), ty =
// tid / (BN / TN)): the product's sums and the epilogue's loads and stores.
struct PwPlace {
    int m0, n0, sbeg, send, groups, group, tid, tx, ty;
};
// The product's shared memory: on the CUDA cores, each group's two stages and the groups' sums
// (`red`, KS > 1); on the tensor cores, each warp's partial tile (rows PW_MMA_ROW apart: padded by
// 4, so that a warp's stores of its fragments touch each bank at most twice).
#define PW_MMA_ROW(BN) ((BN) + 4)
template <int BM, int BN, int KS, bool MMA>
struct PwStages {
    float as[KS][2][PW_BK][BM + 2];
    alignas(16) float bs[KS][2][PW_BK][BN];
    float red[KS > 1 ? KS - 1 : 1][KS > 1 ? BM * BN : 1];
};
template <int BM, int BN, int KS>
struct PwStages<BM, BN, KS, true> {
    float red[4 * KS][BM * PW_MMA_ROW(BN)];
};
// Then the gates of the block's k range, the pool's column sums, the split's verdict.
template <int BM, int BN, int TM, int KS, bool MMA = false>
struct PwShared : PwStages<BM, BN, KS, MMA> {
    float gs[PW_MAX_GATE];
    float psum[BM / TM][BN];
    int last;
};

// A block's product: acc[i][j] of thread `tid` of group 0 = the sum over the block's slice for
// its output (i, j) (PwPlace). Each loads its first weights, then waits for the previous kernel
// (dyn_wait), then loads its first activations, then calls `after_wait` (which loads the gates
// into `gs`), and lets the next kernel be scheduled after its main loop.
template <bool MMA>
struct PwProduct;

// On the CUDA cores. With KS > 1 group g takes the g-th part of the block's k range (whole PW_BK
// steps) with its own stages: more warps on a tile, for layers whose tiles leave a multiprocessor
// with one block or none, where a step's arithmetic waited on its own latency (docs/gpu.md,
// "Tuning"); two groups leave room for two blocks per multiprocessor. The groups' sums meet in
// `red` and group 0 adds them in group order (deterministic).
// Two stages: threads store the next step's tiles while others still read this one's, one barrier
// per step. `as` rows are padded by 2: a warp stores 16 channels of 2 pixels, which then land in 32
// different banks.
template <>
struct PwProduct<false> {
    template <int BM, int BN, int TM, int TN, int KS, class B, class S, class F>
    __device__ __forceinline__ static void run(const B& b, S* shm, const PwPlace& at, float (&acc)[TM][TN],
                                               F after_wait, const float* __restrict__ a, int m, int k,
                                               const float* __restrict__ w, int ldw, int n,
                                               const float* __restrict__ gate) {
        constexpr int COLS = BN / TN, THREADS = (BM / TM) * COLS;
        constexpr int A_LOADS = BM * PW_BK / THREADS, B_LOADS = PW_BK * BN / THREADS;
        static_assert(A_LOADS * THREADS == BM * PW_BK && B_LOADS * THREADS == PW_BK * BN, "tile loads");
        static_assert(BM % 16 == 0 && PW_BK == 16, "the padding below assumes these");
        const float* gs = shm->gs;
        int groups = at.groups, group = at.group, tid = at.tid, sbeg = at.sbeg, send = at.send;
        int tx = at.tx, ty = at.ty;
        auto& as = shm->as[group];
        auto& bs = shm->bs[group];
        // This group's part of the slice, in whole steps; the same number of steps for every group
        // (one barrier per step for the block), a group past the slice's end loading zeros.
        int part = KS > 1 ? ((send - sbeg + groups - 1) / groups + PW_BK - 1) / PW_BK * PW_BK : send - sbeg;
        int kbeg = sbeg, kend = send;
        if (KS > 1) {
            kbeg = sbeg + group * part < send ? sbeg + group * part : send;
            kend = kbeg + part < send ? kbeg + part : send;
        }
        #pragma unroll
        for (int i = 0; i < TM; ++i)
            #pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

        // A step's tiles go through registers: the loads of step s + 1 are issued before step s's
        // arithmetic, which hides their latency. Consecutive threads read consecutive input channels
        // of a pixel (a) or consecutive output channels (w), so all of a thread's loads share one
        // channel of the step (a) and one output column (w), their pixels AP and their rows WR apart.
        // Where each load goes is worked out once, not per step: worked out in the loop, it had made a
        // step of the small tiles 258 instructions for 64 multiply-adds (sm_90 SASS; 179 now).
        static_assert(THREADS % PW_BK == 0 && THREADS % BN == 0, "a thread's loads share a channel and a column");
        constexpr int AP = THREADS / PW_BK, WR = THREADS / BN;
        int ac = tid % PW_BK, ap = tid / PW_BK, wr = tid / BN, wc = tid % BN;
        int m0 = at.m0, n0 = at.n0;
        bool wok = n0 + wc < n;
        const float* pa = a + (long)(m0 + ap) * k + kbeg + ac;
        const float* pw = w + (long)(kbeg + wr) * ldw + n0 + wc;
        long astride = (long)AP * k, wstride = (long)WR * ldw;
        float ra[A_LOADS], rb[B_LOADS];
        // Step s's loads (zeros past the map's edges and past kend), then the pointers move to step s + 1.
        auto fetch_w = [&](int s) {
            int left = kend - kbeg - s * PW_BK;
            #pragma unroll
            for (int l = 0; l < B_LOADS; ++l) rb[l] = wok && wr + l * WR < left ? ld_w(&pw[l * wstride]) : 0.0f;
            pw += PW_BK * (long)ldw;
        };
        auto fetch_a = [&](int s) {
            int left = kend - kbeg - s * PW_BK;
            #pragma unroll
            for (int l = 0; l < A_LOADS; ++l) ra[l] = m0 + ap + l * AP < m && ac < left ? ld_act(&pa[l * astride]) : 0.0f;
            pa += PW_BK;
        };
        // Step s's tiles into stage s & 1 (the a tile gated: one channel, so one gate, per thread).
        auto store = [&](int s) {
            int nxt = s & 1, i = kbeg + s * PW_BK + ac;
            float g = gate && i < kend ? gs[i - sbeg] : 1.0f;
            #pragma unroll
            for (int l = 0; l < A_LOADS; ++l) as[nxt][ac][ap + l * AP] = gate ? ra[l] * g : ra[l];
            #pragma unroll
            for (int l = 0; l < B_LOADS; ++l) bs[nxt][wr + l * WR][wc] = rb[l];
        };
        fetch_w(0);
        dyn_wait(b);
        fetch_a(0);
        after_wait();
        int steps = (part + PW_BK - 1) / PW_BK;
        if (steps > 0) store(0);
        dyn_sync(b);
        for (int s = 0; s < steps; ++s) {
            if (s + 1 < steps) {
                fetch_w(s + 1);
                fetch_a(s + 1);
            }
            int cur = s & 1;
            // A thread's TN columns are adjacent: each k reads them from shared memory in one load
            // (a warp's reads of the small tiles' b tile: 2 wavefronts a k where TN loads of
            // columns COLS apart took 3).
            #pragma unroll
            for (int kk = 0; kk < PW_BK; ++kk) {
                float av[TM], bv[TN];
                #pragma unroll
                for (int i = 0; i < TM; ++i) av[i] = as[cur][kk][ty * TM + i];
                ld_vec(&bs[cur][kk][tx * TN], bv);
                #pragma unroll
                for (int i = 0; i < TM; ++i)
                    #pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
            }
            // Stage (s + 1) & 1 was last read for step s - 1, before the previous barrier.
            if (s + 1 < steps) store(s + 1);
            dyn_sync(b);
        }
        DYNOFA_LAUNCH_DEPENDENTS();

        if (KS > 1) {
            auto& red = shm->red;
            if (group > 0) {
                #pragma unroll
                for (int i = 0; i < TM; ++i)
                    #pragma unroll
                    for (int j = 0; j < TN; ++j) red[group - 1][(i * TN + j) * THREADS + tid] = acc[i][j];
            }
            dyn_sync(b);
            if (group == 0)
                for (int g = 0; g < groups - 1; ++g)
                    #pragma unroll
                    for (int i = 0; i < TM; ++i)
                        #pragma unroll
                        for (int j = 0; j < TN; ++j) acc[i][j] += red[g][(i * TN + j) * THREADS + tid];
        }
    }
};

// Tensor cores: a = a_hi + a_lo with a_hi in tf32 (10 mantissa bits), likewise w, and a w = a_hi w_lo
// + a_lo w_hi + a_hi w_hi, three products with fp32 sums (the small terms first; a_lo w_lo, about
// 2^-22 of a w, is left out): fp32's accuracy, where tf32 alone would give about 1e-3 on the logits.
// sm_80 and newer; elsewhere (sm_72, sm_75) dynofa_pointwise_mma traps, and the plan never
// launches it there (Target::pointwise_mma). The host emulation has it (emulate.h).
//
// x's parts: hi = x to nearest on 10 mantissa bits (ties away from zero, as cvt.rna.tf32 rounds, in
// two integer instructions where cvt.rna.tf32 took about 5 on sm_90: it also checks for infinities
// and NaN, which no finite x needs), and lo = x - hi, exact in fp32, |lo| <= 2^-11 |x|. The tensor
// cores read the top 19 bits of each operand, so lo enters to about 2^-10 of itself (2^-21 of x).
__device__ __forceinline__ void dyn_tf32_split(float x, unsigned& hi, unsigned& lo) {
    hi = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
    lo = __float_as_uint(x - __uint_as_float(hi));
}
// d += a b for one warp: a 16 x 8 (row-major), b 8 x 8 (k x n) and d 16 x 8 as mma.sync's m16n8k8
// fragments lay them out: lane l, g = l / 4, c = l % 4, holds a at (g, c), (g + 8, c), (g, c + 4),
// (g + 8, c + 4), b at (c, g), (c + 4, g) and d at (g, 2c), (g, 2c + 1), (g + 8, 2c), (g + 8, 2c + 1).
// Every lane of the warp must call it together.
__device__ __forceinline__ void dyn_mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
    __trap();
#else
    dynofa_emu::mma_tf32(d, a, b);
#endif
}

// On the tensor cores (dynofa_pointwise_mma): the block's 4 * groups warps each take the w-th part
// of the slice (whole steps of 8 channels) and multiply the whole 16 x 32 tile, an m16n8k8 product
// (dyn_mma, three in tf32) per 8 channels and 8 output channels. A lane loads its fragments straight
// from memory into registers, B::MMA_AHEAD steps ahead (the first steps' weights before the wait):
// no shared stages and no barrier in the loop. Rows past the map's end read the last row, and
// columns past the layer's end are not loaded: what they hold lands in outputs that nothing
// stores. Channels past the slice's end (a last, part step) read zeros. Then the warps' partial
// tiles meet in shared memory, and group 0 adds them in warp order (deterministic), each thread
// taking the outputs that a thread of the CUDA cores' tiling has.
template <>
struct PwProduct<true> {
    template <int BM, int BN, int TM, int TN, int KS, class B, class S, class F>
    __device__ __forceinline__ static void run(const B& b, S* shm, const PwPlace& at, float (&acc)[TM][TN],
                                               F after_wait, const float* __restrict__ a, int m, int k,
                                               const float* __restrict__ w, int ldw, int n,
                                               const float* __restrict__ gate) {
        static_assert(BM == 16 && BN % 8 == 0, "a warp's tile is m16 x BN");
        constexpr int NT = BN / 8, D = B::MMA_AHEAD, ROW = PW_MMA_ROW(BN);
        const float* gs = shm->gs;
        int lane = b.tx() % 32, warp = b.tx() / 32, warps = b.dx() / 32, g = lane / 4, c = lane % 4;
        int per = ((at.send - at.sbeg + 7) / 8 + warps - 1) / warps * 8;
        int kbeg = at.sbeg + warp * per < at.send ? at.sbeg + warp * per : at.send;
        int len = kbeg + per < at.send ? per : at.send - kbeg, full = len / 8, steps = (len + 7) / 8;
        int r0 = at.m0 + g < m ? at.m0 + g : m - 1, r1 = at.m0 + g + 8 < m ? at.m0 + g + 8 : m - 1;
        const float* pa0 = a + (long)r0 * k + kbeg + c;
        const float* pa1 = a + (long)r1 * k + kbeg + c;
        const float* pw0 = w + (long)(kbeg + c) * ldw + at.n0 + g;
        const float* pw1 = pw0 + 4L * ldw;
        long w8 = 8L * ldw;
        bool cok[NT];
        #pragma unroll
        for (int j = 0; j < NT; ++j) cok[j] = at.n0 + 8 * j + g < n;
        // Ring slot u holds step s's fragments for s % D == u; a last, part step goes through slot 0
        // after the others (only where the slice is not whole steps of 8: no plan's is).
        float fa[D][4], fb[D][NT][2];
        #pragma unroll
        for (int u = 0; u < D; ++u)
            #pragma unroll
            for (int j = 0; j < NT; ++j) fb[u][j][0] = fb[u][j][1] = 0.0f;
        // The next step's fragments into slot u (channels from `left` on read as zeros), then the
        // pointers move on a step.
        auto fetch_w = [&](int u, int left) {
            #pragma unroll
            for (int j = 0; j < NT; ++j) {
                if (!cok[j]) continue;
                fb[u][j][0] = left > 0 ? ld_w(pw0 + 8 * j) : 0.0f;
                fb[u][j][1] = left > 4 ? ld_w(pw1 + 8 * j) : 0.0f;
            }
            pw0 += w8;
            pw1 += w8;
        };
        auto fetch_a = [&](int u, int left) {
            fa[u][0] = left > 0 ? ld_act(pa0) : 0.0f;
            fa[u][1] = left > 0 ? ld_act(pa1) : 0.0f;
            fa[u][2] = left > 4 ? ld_act(pa0 + 4) : 0.0f;
            fa[u][3] = left > 4 ? ld_act(pa1 + 4) : 0.0f;
            pa0 += 8;
            pa1 += 8;
        };
        float d[NT][4];
        #pragma unroll
        for (int j = 0; j < NT; ++j)
            #pragma unroll
            for (int q = 0; q < 4; ++q) d[j][q] = 0.0f;
        // Step s's product from slot u (gated: each lane's two channels' gates, zeros from `left` on).
        auto product = [&](int u, int s, int left) {
            float g0 = 1.0f, g1 = 1.0f;
            if (gate) {
                int i = kbeg - at.sbeg + 8 * s + c;
                g0 = left > 0 ? gs[i] : 0.0f;
                g1 = left > 4 ? gs[i + 4] : 0.0f;
            }
            unsigned ah[4], al[4];
            dyn_tf32_split(fa[u][0] * g0, ah[0], al[0]);
            dyn_tf32_split(fa[u][1] * g0, ah[1], al[1]);
            dyn_tf32_split(fa[u][2] * g1, ah[2], al[2]);
            dyn_tf32_split(fa[u][3] * g1, ah[3], al[3]);
            #pragma unroll
            for (int j = 0; j < NT; ++j) {
                unsigned bh[2], bl[2];
                dyn_tf32_split(fb[u][j][0], bh[0], bl[0]);
                dyn_tf32_split(fb[u][j][1], bh[1], bl[1]);
                dyn_mma(d[j], al, bh);
                dyn_mma(d[j], ah, bl);
                dyn_mma(d[j], ah, bh);
            }
        };
        #pragma unroll
        for (int u = 0; u < D; ++u)
            if (u < full) fetch_w(u, 8);
        dyn_wait(b);
        #pragma unroll
        for (int u = 0; u < D; ++u)
            if (u < full) fetch_a(u, 8);
        after_wait();
        for (int s0 = 0; s0 < full; s0 += D) {
            #pragma unroll
            for (int u = 0; u < D; ++u) {
                if (s0 + u >= full) break;
                product(u, s0 + u, 8);
                if (s0 + u + D < full) {
                    fetch_w(u, 8);
                    fetch_a(u, 8);
                }
            }
        }
        if (full < steps) {
            int left = len - 8 * full - c;
            fetch_w(0, left);
            fetch_a(0, left);
            product(0, full, left);
        }
        DYNOFA_LAUNCH_DEPENDENTS();

        auto& red = shm->red;
        #pragma unroll
        for (int j = 0; j < NT; ++j) {
            int o = 8 * j + 2 * c;
            red[warp][g * ROW + o] = d[j][0];
            red[warp][g * ROW + o + 1] = d[j][1];
            red[warp][(g + 8) * ROW + o] = d[j][2];
            red[warp][(g + 8) * ROW + o + 1] = d[j][3];
        }
        dyn_sync(b);
        int tx = at.tx, ty = at.ty;
        #pragma unroll
        for (int i = 0; i < TM; ++i)
            #pragma unroll
            for (int j = 0; j < TN; ++j) {
                float sum = 0.0f;
                if (at.group == 0)
                    for (int v = 0; v < warps; ++v) sum += red[v][(ty * TM + i) * ROW + tx * TN + j];
                acc[i][j] = sum;
            }
    }
};

template <int BM, int BN, int TM, int TN, int KS, bool MMA, class B>
__device__ __forceinline__ void pointwise_tile(const B& b, PwShared<BM, BN, TM, KS, MMA>* shm, DYNOFA_POINTWISE_PARAMS) {
    constexpr int COLS = BN / TN, THREADS = (BM / TM) * COLS;
    float* gs = shm->gs;
    int& last = shm->last;
    // With one group (KS = 1, on the CUDA cores) these are constants, and the kernel is the plain
    // tiling.
    constexpr bool GROUPS = KS > 1 || MMA;
    PwPlace at;
    at.groups = GROUPS ? b.dx() / THREADS : 1;
    at.group = GROUPS ? b.tx() / THREADS : 0;
    at.tid = GROUPS ? b.tx() % THREADS : b.tx();
    at.m0 = b.by() * BM;
    at.n0 = b.bx() * BN;
    at.sbeg = b.bz() * kc;
    at.send = at.sbeg + kc < k ? at.sbeg + kc : k;
    at.tx = at.tid % COLS;
    at.ty = at.tid / COLS;
    int groups = at.groups, m0 = at.m0, n0 = at.n0, sbeg = at.sbeg, send = at.send, tx = at.tx, ty = at.ty;
    bool lead = at.group == 0;

    float es[TN], et[TN];
    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        int o = n0 + tx * TN + j;
        es[j] = o < n ? ld_w(&scale[o]) : 0.0f;
        et[j] = o < n ? ld_w(&shift[o]) : 0.0f;
    }
    // A thread's TN adjacent outputs of a pixel are read and written in one access where the row
    // allows it (n a multiple of TN, the buffer aligned): a warp's access then covers whole
    // sectors, as when its lanes' columns were adjacent.
    auto aligned = [&](const float* q) {
        return q && n % TN == 0 && reinterpret_cast<unsigned long long>(q) % (4 * TN) == 0;
    };
    int o0 = n0 + tx * TN;
    bool row_vec = o0 + TN <= n;
    float er[TM][TN];
    bool res_vec = aligned(res) && row_vec;
    // After the product's first loads: the residual, its latency hidden by the product, and this
    // block's gates (the SE expand layer, a dynofa_matvec launch, wrote them).
    auto after_wait = [&] {
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            int p = m0 + ty * TM + i;
            if (res_vec && p < m) {
                ld_act_vec(&res[(long)p * n + o0], er[i]);
                continue;
            }
            #pragma unroll
            for (int j = 0; j < TN; ++j) er[i][j] = res && o0 + j < n && p < m ? ld_act(&res[(long)p * n + o0 + j]) : 0.0f;
        }
        if (gate) {
            for (int i = sbeg + b.tx(); i < send; i += groups * THREADS) gs[i - sbeg] = ld_act(&gate[i]);
            dyn_sync(b);
        }
    };
    float acc[TM][TN];
    PwProduct<MMA>::template run<BM, BN, TM, TN, KS>(b, shm, at, acc, after_wait, a, m, k, w, ldw, n, gate);

    // From here on group 0 alone finishes the tile; the others only pass the barriers.
    if (b.gz() > 1) {
        long slice = (long)m * n;
        bool split_vec = aligned(split) && row_vec;
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            int p = m0 + ty * TM + i;
            if (!lead || p >= m) continue;
            float* q = &split[b.bz() * slice + (long)p * n + o0];
            if (split_vec) {
                st_vec(q, acc[i]);
                continue;
            }
            #pragma unroll
            for (int j = 0; j < TN; ++j)
                if (o0 + j < n) q[j] = acc[i][j];
        }
        __threadfence();
        dyn_sync(b);
        if (b.tx() == 0) {
            unsigned* ticket = &tickets[b.by() * b.gx() + b.bx()];
            last = atomicAdd(ticket, 1u) == b.gz() - 1;
            if (last) *ticket = 0;
        }
        dyn_sync(b);
        if (!last) return;
        // All of a thread's outputs at once, ZB slices of each a round trip (B::SPLIT_LOADS loads
        // in flight: 32 in a graph's kernel, 16 in the persistent kernel, which 32 took past its
        // spill bound), each output's slices added in slice order (deterministic): one output
        // after another had cost a round trip per output and 8 slices.
        constexpr int ZB = TM * TN >= B::SPLIT_LOADS ? 1 : B::SPLIT_LOADS / (TM * TN);
        long at[TM][TN];
        #pragma unroll
        for (int i = 0; i < TM; ++i)
            #pragma unroll
            for (int j = 0; j < TN; ++j) {
                int o = n0 + tx * TN + j, p = m0 + ty * TM + i;
                at[i][j] = lead && o < n && p < m ? (long)p * n + o : -1;
                acc[i][j] = 0.0f;
            }
        for (int z0 = 0; z0 < b.gz(); z0 += ZB) {
            float v[ZB][TM][TN];
            #pragma unroll
            for (int u = 0; u < ZB; ++u)
                #pragma unroll
                for (int i = 0; i < TM; ++i)
                    #pragma unroll
                    for (int j = 0; j < TN; ++j) {
                        bool in = at[i][j] >= 0 && z0 + u < b.gz();
                        v[u][i][j] = in ? ld_act(&split[(z0 + u) * slice + at[i][j]]) : 0.0f;
                    }
            #pragma unroll
            for (int u = 0; u < ZB; ++u)
                #pragma unroll
                for (int i = 0; i < TM; ++i)
                    #pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] += v[u][i][j];
        }
    }

    float colsum[TN];
    #pragma unroll
    for (int j = 0; j < TN; ++j) colsum[j] = 0.0f;
    bool out_vec = aligned(out) && row_vec;
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        int p = m0 + ty * TM + i;
        if (!lead || p >= m) continue;
        float v[TN];
        #pragma unroll
        for (int j = 0; j < TN; ++j) {
            v[j] = dynofa_act(acc[i][j] * es[j] + et[j], act);
            if (res) v[j] += er[i][j];
            if (o0 + j < n) colsum[j] += v[j];
        }
        if (out_vec) {
            st_vec(&out[(long)p * n + o0], v);
            continue;
        }
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            if (o0 + j < n) out[(long)p * n + o0 + j] = v[j];
    }
    if (!pool) return;
    auto& psum = shm->psum;
    if (lead)
        #pragma unroll
        for (int j = 0; j < TN; ++j) psum[ty][tx * TN + j] = colsum[j];
    dyn_sync(b);
    for (int col = b.tx(); col < BN; col += groups * THREADS) {
        float total = 0.0f;
        for (int q = 0; q < BM / TM; ++q) total += psum[q][col];
        if (n0 + col < n) pool[(long)b.by() * n + n0 + col] = total;
    }
}

// MINB blocks per multiprocessor at least: uncapped, the large tiling's registers (140) would leave
// room for one, and the small one's (120) for four; the k-split one's 512 threads take 128 each.
#define DYNOFA_POINTWISE(name, BM, BN, TM, TN, KS, MMA, MINB)                                          \
    extern "C" __global__ void __launch_bounds__(KS * (BM / TM) * (BN / TN), MINB) name(DYNOFA_POINTWISE_PARAMS) { \
        __shared__ PwShared<BM, BN, TM, KS, MMA> shm;                                                  \
        pointwise_tile<BM, BN, TM, TN, KS, MMA>(HwBlock(), &shm, DYNOFA_POINTWISE_ARGS);               \
    }
// Large tiles for layers with many pixels; small ones (more blocks, usually with k split) for the
// rest; small ones with k split inside the block as well, for layers of few tiles.
DYNOFA_POINTWISE(dynofa_pointwise, PW_BM, PW_BN, PW_TM, PW_TN, 1, false, 2)
DYNOFA_POINTWISE(dynofa_pointwise_small, PWS_BM, PWS_BN, PWS_TM, PWS_TN, 1, false, 5)
DYNOFA_POINTWISE(dynofa_pointwise_ksplit, PWS_BM, PWS_BN, PWS_TM, PWS_TN, PWK_KS, false, 1)
// The small tiles on the tensor cores, one or PWM_GROUPS groups (4 or 8 warps) per block.
DYNOFA_POINTWISE(dynofa_pointwise_mma, PWS_BM, PWS_BN, PWS_TM, PWS_TN, PWM_GROUPS, true, 1)

// The same product and epilogue shaped for latency, for layers with few pixels (the late layers at
// batch 1, where pointwise_tile's k loop of dependent steps and its split across blocks cost more
// than the arithmetic). A block computes TM pixels x 32 output channels (the lanes); its
// blockDim.y warps split k, warp y taking input channels [y * kc, y * kc + kc). Before waiting for
// the previous kernel, each lane loads its output channel's kc weights into registers. After the
// wait, the block stages its pixels' gated inputs in shared memory with every load in flight at
// once (one round trip to memory), each warp multiplies its k range from there (every lane of a
// warp reading the same address: a broadcast), and the warps' partial sums meet in shared memory
// (`buf` again) and are added in warp order (deterministic). The plan guarantees: k a multiple of
// 4 and at most KMAX, kc a multiple of 4 and at most KC, blockDim = (32, max(ceil(k / kc), TM))
// with at most PWW_WARPS warps (warp y < TM also finishes pixel p0 + y). `buf` holds the staged
// inputs, then the partial sums. `split` and `tickets` are unused (the same arguments as the tiled
// kernels).
template <int TM, int KMAX>
struct PwwShared {
    static constexpr int STAGED = TM * KMAX / 4, PARTS = PWW_WARPS * TM * 8;
    float4 buf[STAGED > PARTS ? STAGED : PARTS];
};
template <int TM, int KC, int KMAX, class B>
__device__ __forceinline__ void pointwise_warps(const B& b, PwwShared<TM, KMAX>* shm, DYNOFA_POINTWISE_PARAMS) {
    static_assert(KC % 4 == 0 && KMAX % 4 == 0, "float4 steps");
    float4* buf = shm->buf;
    float* part = reinterpret_cast<float*>(buf);  // [warp][TM][32], after the product
    int lane = b.tx(), warp = b.ty(), tid = warp * 32 + lane, threads = 32 * b.dy();
    int o = b.bx() * 32 + lane, p0 = b.by() * TM;
    int kbeg = warp * kc, len = k - kbeg < kc ? k - kbeg : kc;
    float wr[KC];
#pragma unroll
    for (int j = 0; j < KC; ++j) wr[j] = j < len && o < n ? ld_w(&w[(long)(kbeg + j) * ldw + o]) : 0.0f;
    // Warp y < TM finishes pixel p0 + y: its epilogue constants now, its residual after the wait.
    bool fin = warp < TM && o < n && p0 + warp < m;
    float es = fin ? ld_w(&scale[o]) : 0.0f, et = fin ? ld_w(&shift[o]) : 0.0f;
    dyn_wait(b);
    float er = fin && res ? ld_act(&res[(long)(p0 + warp) * n + o]) : 0.0f;
    // A thread stages at most LOADS quads (threads >= 32 k / kc), all loaded before any is stored.
    constexpr int LOADS = (TM * KC + 127) / 128;
    int quads = k / 4;
    float4 xs[LOADS];
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int e = tid + l * threads, i = e / quads, q = e % quads;
        xs[l] = float4{0.0f, 0.0f, 0.0f, 0.0f};
        if (e < TM * quads && p0 + i < m) {
            float4 x = ld_act<float4>(a + (long)(p0 + i) * k + 4 * q);
            if (gate) {
                float4 g = ld_act<float4>(gate + 4 * q);
                x.x *= g.x;
                x.y *= g.y;
                x.z *= g.z;
                x.w *= g.w;
            }
            xs[l] = x;
        }
    }
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int e = tid + l * threads;
        if (e < TM * quads) buf[e / quads * (KMAX / 4) + e % quads] = xs[l];
    }
    dyn_sync(b);
    float acc[TM];
#pragma unroll
    for (int i = 0; i < TM; ++i) acc[i] = 0.0f;
    // Weights past this warp's range are 0 and are multiplied with staged (finite) inputs: no
    // branch on kc, so that every index into wr is a constant.
#pragma unroll
    for (int j = 0; j < KC; j += 4) {
        int q = (kbeg + j) / 4 < quads ? (kbeg + j) / 4 : quads - 1;
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            float4 x = buf[i * (KMAX / 4) + q];
            acc[i] += x.x * wr[j] + x.y * wr[j + 1] + x.z * wr[j + 2] + x.w * wr[j + 3];
        }
    }
    DYNOFA_LAUNCH_DEPENDENTS();
    dyn_sync(b);
#pragma unroll
    for (int i = 0; i < TM; ++i) part[(warp * TM + i) * 32 + lane] = acc[i];
    dyn_sync(b);
    float v = 0.0f;
    if (fin) {
        float sum = dynofa_sum_strided(&part[warp * 32 + lane], TM * 32, b.dy());
        v = dynofa_act(sum * es + et, act) + er;
        out[(long)(p0 + warp) * n + o] = v;
    }
    if (!pool) return;
    // The head's pool: this tile's column sums, pixel by pixel in order.
    dyn_sync(b);
    if (warp < TM) part[warp * 32 + lane] = v;
    dyn_sync(b);
    if (warp == 0 && o < n) {
        float total = 0.0f;
        for (int i = 0; i < TM; ++i) total += part[i * 32 + lane];
        pool[(long)b.by() * n + o] = total;
    }
}

// Two shapes: PWW_TM pixels with up to PWW_KC weights per lane (few pixels, long k), and PWW16_TM
// pixels with up to PWW16_KC (more pixels per block for larger maps, whose k is short).
#define DYNOFA_POINTWISE_WARPS(name, TM, KC, KMAX)                                                 \
    extern "C" __global__ void __launch_bounds__(32 * PWW_WARPS) name(DYNOFA_POINTWISE_PARAMS) {      \
        __shared__ PwwShared<TM, KMAX> shm;                                                        \
        pointwise_warps<TM, KC, KMAX>(HwBlock(), &shm, DYNOFA_POINTWISE_ARGS);                     \
    }
DYNOFA_POINTWISE_WARPS(dynofa_pointwise_warps, PWW_TM, PWW_KC, PWW_KC * PWW_WARPS)
DYNOFA_POINTWISE_WARPS(dynofa_pointwise_warps16, PWW16_TM, PWW16_KC, PWW16_KC * PWW_WARPS)

// Depthwise KxK convolution, stride S, padding K/2, + BN + act, NHWC `in` ([size][size][c]) into
// `out` ([osize][osize][c]); taps `w` are `[K*K][ldw]`. Two kernels compute it: dynofa_depthwise
// from global memory, for maps small enough that its tiles must be small to make blocks for every
// multiprocessor, and dynofa_depthwise_region from a shared-memory copy of each block's input, for
// large maps. Both: block (DW_CH, DW_ROWS), x walking channels; a thread keeps its channel's taps
// in registers (loaded before waiting for the previous kernel; the region kernel stages them in
// shared memory across its region's loads) and computes runs of consecutive
// output pixels of a row, for each of the K input rows from one segment of the inputs that the
// run's windows cover, so that an input read serves up to K outputs (one read per tap cost more
// in address arithmetic than in multiply-adds). With `partial` non-null, each block also writes
// its tile's per-channel sums of the output to partial[blockIdx.y][c] (the SE squeeze, finished in
// dynofa_matvec).

// Channel ch's taps, BN scale and shift (zeros past c).
template <int K>
__device__ __forceinline__ void dw_load_taps(const float* __restrict__ w, int ldw, const float* __restrict__ scale,
                                             const float* __restrict__ shift, int ch, int c, float (&taps)[K * K],
                                             float& s, float& t) {
#pragma unroll
    for (int tap = 0; tap < K * K; ++tap) taps[tap] = ch < c ? ld_w(&w[tap * ldw + ch]) : 0.0f;
    s = ch < c ? ld_w(&scale[ch]) : 0.0f;
    t = ch < c ? ld_w(&shift[ch]) : 0.0f;
}

// One input row's share of a run of N outputs: seg holds the row's (N - 1) * S + K inputs.
template <int K, int S, int N>
__device__ __forceinline__ void dw_accumulate(const float (&seg)[(N - 1) * S + K], const float* taps_row,
                                              float (&acc)[N]) {
#pragma unroll
    for (int r = 0; r < N; ++r)
#pragma unroll
        for (int dx = 0; dx < K; ++dx) acc[r] += seg[r * S + dx] * taps_row[dx];
}

// Output pixels (oy, ox0 + r) for r < N that lie in the map, after BN and act; returns their sum.
template <int N>
__device__ __forceinline__ float dw_store(const float (&acc)[N], float s, float t, int act, float* __restrict__ out,
                                          int osize, int c, int ch, int oy, int ox0) {
    float sum = 0.0f;
#pragma unroll
    for (int r = 0; r < N; ++r) {
        if (ox0 + r >= osize) break;
        float v = dynofa_act(acc[r] * s + t, act);
        out[((long)oy * osize + ox0 + r) * c + ch] = v;
        sum += v;
    }
    return sum;
}

// The block's per-channel sums of its outputs (each thread's `sum`, rows added in order) to
// partial[blockIdx.y][c]. Every thread of the block calls it.
template <class B>
__device__ __forceinline__ void dw_partial(const B& b, float sum, float* __restrict__ partial, int c,
                                           int ch, float (*sums)[DW_CH]) {
    sums[b.ty()][b.tx()] = sum;
    dyn_sync(b);
    if (b.ty() == 0 && ch < c) {
        float total = 0.0f;
        for (int y = 0; y < DW_ROWS; ++y) total += sums[y][b.tx()];
        partial[b.by() * c + ch] = total;
    }
}

// From global memory: runs of DW_RUN pixels, y walking the `per_tile` runs of tile blockIdx.y (the
// plan makes tiles small where a map has few pixels, so that there are blocks for every
// multiprocessor).
template <int K, int S, class B>
__device__ __forceinline__ void depthwise_runs(const B& b, const float* __restrict__ in, int size, int c,
                                               const float* __restrict__ w, int ldw, int osize, int per_tile,
                                               const float* __restrict__ scale, const float* __restrict__ shift,
                                               int act, float* __restrict__ out, float* __restrict__ partial,
                                               float (*sums)[DW_CH]) {
    constexpr int SEG = (DW_RUN - 1) * S + K;
    int ch = b.bx() * DW_CH + b.tx();
    int per_row = (osize + DW_RUN - 1) / DW_RUN, runs = osize * per_row;
    int begin = b.by() * per_tile, end = begin + per_tile < runs ? begin + per_tile : runs;
    float sum = 0.0f, taps[K * K], s, t;
    dw_load_taps<K>(w, ldw, scale, shift, ch, c, taps, s, t);
    dyn_wait(b);
    if (ch < c) {
        for (int q = begin + b.ty(); q < end; q += DW_ROWS) {
            int oy = q / per_row, ox0 = q % per_row * DW_RUN, ix0 = ox0 * S - K / 2;
            float acc[DW_RUN];
#pragma unroll
            for (int r = 0; r < DW_RUN; ++r) acc[r] = 0.0f;
#pragma unroll
            for (int dy = 0; dy < K; ++dy) {
                int iy = oy * S + dy - K / 2;
                if (iy < 0 || iy >= size) continue;
                const float* row = in + (long)iy * size * c + ch;
                float seg[SEG];
#pragma unroll
                for (int x = 0; x < SEG; ++x) {
                    int ix = ix0 + x;
                    seg[x] = ix >= 0 && ix < size ? ld_act(&row[(long)ix * c]) : 0.0f;
                }
                dw_accumulate<K, S, DW_RUN>(seg, &taps[dy * K], acc);
            }
            sum += dw_store<DW_RUN>(acc, s, t, act, out, osize, c, ch, oy, ox0);
        }
    }
    DYNOFA_LAUNCH_DEPENDENTS();
    if (partial) dw_partial(b, sum, partial, c, ch, sums);
}

// From shared memory: a tile of DW_ROWS output rows x DWR_COLS1 (stride 1) or DWR_COLS2 columns,
// thread row y computing output row y of the tile in one run. The block first copies the input
// region that the tile's windows cover (zeros outside the map) into `region` ([pixel][DW_CH]),
// every thread issuing all its loads before storing any: one round trip to memory where reading
// each run's rows from global memory was a chain of K dependent ones (a 7x7 layer on a 56x56 map
// took 15 µs on an H100). Tiles are numbered row-major, ceil(osize / columns) per row.
// A region tile's geometry: columns, the input region's rows, columns and pixels, and the region
// pixels per thread row.
template <int K, int S>
struct DwRegion {
    static constexpr int TW = S == 1 ? DWR_COLS1 : DWR_COLS2, RH = (DW_ROWS - 1) * S + K, RW = (TW - 1) * S + K;
    static constexpr int PIXELS = RH * RW, LOADS = (PIXELS + DW_ROWS - 1) / DW_ROWS;
    static_assert(PIXELS <= DWR_PIXELS, "the region fits the shared array");
};

// Tile blockIdx.y's first output pixel (row, column) for tiles of ROWS x TW output pixels,
// numbered row-major; its region starts at (oy0 * S - K / 2, ox0 * S - K / 2).
template <int ROWS, int TW, class B>
__device__ __forceinline__ void dw_tile_origin(const B& b, int osize, int& oy0, int& ox0) {
    int per_row = (osize + TW - 1) / TW;
    oy0 = b.by() / per_row * ROWS;
    ox0 = b.by() % per_row * TW;
}

// The second half of the region kernels: thread row y computes output row y of tile blockIdx.y from
// `region` (filled, behind a barrier), then stores it and the SE sums.
template <int K, int S, class B>
__device__ __forceinline__ void dw_from_region(const B& b, const float* __restrict__ region,
                                               const float (&taps)[K * K], float s, float t, int act,
                                               float* __restrict__ out, int osize, int c,
                                               float* __restrict__ partial, float (*sums)[DW_CH]) {
    using G = DwRegion<K, S>;
    int lane = b.tx(), ty = b.ty(), ch = b.bx() * DW_CH + lane;
    int oy0, ox0;
    dw_tile_origin<DW_ROWS, G::TW>(b, osize, oy0, ox0);
    float acc[G::TW];
#pragma unroll
    for (int r = 0; r < G::TW; ++r) acc[r] = 0.0f;
#pragma unroll
    for (int dy = 0; dy < K; ++dy) {
        const float* row = region + (ty * S + dy) * G::RW * DW_CH + lane;
        float seg[G::RW];
#pragma unroll
        for (int x = 0; x < G::RW; ++x) seg[x] = row[x * DW_CH];
        dw_accumulate<K, S, G::TW>(seg, &taps[dy * K], acc);
    }
    DYNOFA_LAUNCH_DEPENDENTS();
    int oy = oy0 + ty;
    float sum = ch < c && oy < osize ? dw_store<G::TW>(acc, s, t, act, out, osize, c, ch, oy, ox0) : 0.0f;
    if (partial) dw_partial(b, sum, partial, c, ch, sums);
}

template <int K, int S, class B>
__device__ __forceinline__ void depthwise_region(const B& b, const float* __restrict__ in, int size, int c,
                                                 const float* __restrict__ w, int ldw, int osize,
                                                 const float* __restrict__ scale, const float* __restrict__ shift,
                                                 int act, float* __restrict__ out, float* __restrict__ partial,
                                                 float* __restrict__ region, float* __restrict__ staged,
                                                 float (*sums)[DW_CH]) {
    using G = DwRegion<K, S>;
    constexpr int PIXELS = G::PIXELS, LOADS = G::LOADS, RW = G::RW;
    int lane = b.tx(), ty = b.ty(), ch = b.bx() * DW_CH + lane;
    int oy0, ox0;
    dw_tile_origin<DW_ROWS, G::TW>(b, osize, oy0, ox0);
    int iy0 = oy0 * S - K / 2, ix0 = ox0 * S - K / 2;
    // The taps go to shared memory before the wait and come back after the region's loads: held
    // in registers across those, they took sm_90's ptxas to 136 registers (one block per
    // multiprocessor); staged, it takes 80.
    float taps[K * K], s, t;
    dw_load_taps<K>(w, ldw, scale, shift, ch, c, taps, s, t);
    if (ty == 0)
#pragma unroll
        for (int tap = 0; tap < K * K; ++tap) staged[tap * DW_CH + lane] = taps[tap];
    dyn_wait(b);
    float v[LOADS];
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int px = ty + l * DW_ROWS, iy = iy0 + px / RW, ix = ix0 + px % RW;
        bool inside = px < PIXELS && ch < c && iy >= 0 && iy < size && ix >= 0 && ix < size;
        v[l] = inside ? ld_act(&in[((long)iy * size + ix) * c + ch]) : 0.0f;
    }
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int px = ty + l * DW_ROWS;
        if (px < PIXELS) region[px * DW_CH + lane] = v[l];
    }
    dyn_sync(b);
#pragma unroll
    for (int tap = 0; tap < K * K; ++tap) taps[tap] = staged[tap * DW_CH + lane];
    dw_from_region<K, S>(b, region, taps, s, t, act, out, osize, c, partial, sums);
}

// The expansion (1x1 `[in][ldwe]` + BN + act) and the depthwise layer after it in one kernel:
// dynofa_depthwise_region with the region computed rather than read. The block copies its
// channels' expansion weights into shared memory (before waiting for the previous kernel) and the
// region's input pixels, all `in` channels (one round trip), then each thread computes its region
// pixels' expanded values for its channel (zeros outside the map, the depthwise padding), and the
// depthwise layer reads them from shared memory. The expanded map never goes through memory, and
// a launch is saved; the halo's pixels are expanded by every tile that covers them. `buf` holds
// the weights and the input, then the expanded region: the plan checks (PIXELS + DW_CH) * in <=
// EDW_FLOATS; `in` is a multiple of 4.
template <int K, int S, class B>
__device__ __forceinline__ void expand_depthwise(const B& b, const float* __restrict__ x, int size, int in,
                                                 const float* __restrict__ we, int ldwe,
                                                 const float* __restrict__ escale, const float* __restrict__ eshift,
                                                 int eact, int c, const float* __restrict__ w, int ldw, int osize,
                                                 const float* __restrict__ scale, const float* __restrict__ shift,
                                                 int act, float* __restrict__ out, float* __restrict__ partial,
                                                 float* __restrict__ buf, float (*sums)[DW_CH]) {
    using G = DwRegion<K, S>;
    constexpr int PIXELS = G::PIXELS, LOADS = G::LOADS, RW = G::RW, THREADS = DW_CH * DW_ROWS;
    constexpr int WLOADS = (EDW_MAX_IN * DW_CH + THREADS - 1) / THREADS, XLOADS = (EDW_FLOATS / 4 + THREADS - 1) / THREADS;
    int lane = b.tx(), ty = b.ty(), tid = ty * DW_CH + lane, ch = b.bx() * DW_CH + lane;
    int oy0, ox0;
    dw_tile_origin<DW_ROWS, G::TW>(b, osize, oy0, ox0);
    int iy0 = oy0 * S - K / 2, ix0 = ox0 * S - K / 2;
    // buf: weights [in][DW_CH], then the region's input [PIXELS][in].
    float* ws = buf;
    float4* xs = reinterpret_cast<float4*>(buf + in * DW_CH);
    {
        float v[WLOADS];
#pragma unroll
        for (int l = 0; l < WLOADS; ++l) {
            int e = tid + l * THREADS, i = e / DW_CH, o = b.bx() * DW_CH + e % DW_CH;
            v[l] = i < in && o < c ? ld_w(&we[(long)i * ldwe + o]) : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < WLOADS; ++l)
            if (tid + l * THREADS < in * DW_CH) ws[tid + l * THREADS] = v[l];
    }
    float es = ch < c ? ld_w(&escale[ch]) : 0.0f, et = ch < c ? ld_w(&eshift[ch]) : 0.0f;
    dyn_wait(b);
    int quads = in / 4, total = PIXELS * quads;
    {
        float4 v[XLOADS];
#pragma unroll
        for (int l = 0; l < XLOADS; ++l) {
            int e = tid + l * THREADS, px = e / quads, iy = iy0 + px / RW, ix = ix0 + px % RW;
            bool inside = e < total && iy >= 0 && iy < size && ix >= 0 && ix < size;
            const float* at = x + ((long)iy * size + ix) * in + 4 * (e % quads);
            v[l] = inside ? ld_act<float4>(at) : float4{0.0f, 0.0f, 0.0f, 0.0f};
        }
#pragma unroll
        for (int l = 0; l < XLOADS; ++l)
            if (tid + l * THREADS < total) xs[tid + l * THREADS] = v[l];
    }
    dyn_sync(b);
    // Thread row y expands region pixels y, y + DW_ROWS, ... for its channel, input channels in
    // order; a warp's lanes read the same input (a broadcast) and consecutive weights.
    float acc[LOADS];
#pragma unroll
    for (int l = 0; l < LOADS; ++l) acc[l] = 0.0f;
    for (int q = 0; q < quads; ++q) {
        float w0 = ws[(4 * q) * DW_CH + lane], w1 = ws[(4 * q + 1) * DW_CH + lane];
        float w2 = ws[(4 * q + 2) * DW_CH + lane], w3 = ws[(4 * q + 3) * DW_CH + lane];
#pragma unroll
        for (int l = 0; l < LOADS; ++l) {
            int px = ty + l * DW_ROWS;
            if (px >= PIXELS) break;
            float4 v = xs[px * quads + q];
            acc[l] += v.x * w0;
            acc[l] += v.y * w1;
            acc[l] += v.z * w2;
            acc[l] += v.w * w3;
        }
    }
    dyn_sync(b);
    // The expanded region replaces the weights and inputs: [PIXELS][DW_CH] as the region kernel's.
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int px = ty + l * DW_ROWS, iy = iy0 + px / RW, ix = ix0 + px % RW;
        bool inside = ch < c && iy >= 0 && iy < size && ix >= 0 && ix < size;
        if (px < PIXELS) buf[px * DW_CH + lane] = inside ? dynofa_act(acc[l] * es + et, eact) : 0.0f;
    }
    // The taps only now: loaded before the wait, they were live through the expansion (no room
    // in shared memory to stage them, as dynofa_depthwise_region does).
    float taps[K * K], s, t;
    dw_load_taps<K>(w, ldw, scale, shift, ch, c, taps, s, t);
    dyn_sync(b);
    dw_from_region<K, S>(b, buf, taps, s, t, act, out, osize, c, partial, sums);
}

// `return F<K, S>(args...)` for the kernel's k and stride: the plan passes k = 3, 5 or 7 and
// stride 1 or 2 only.
#define DYNOFA_DW_CASE(K, S, F, ...) \
    if (k == K && stride == S) return F<K, S>(__VA_ARGS__);
#define DYNOFA_DW_DISPATCH(F, ...)                                                                  \
    DYNOFA_DW_CASE(3, 1, F, __VA_ARGS__) DYNOFA_DW_CASE(3, 2, F, __VA_ARGS__)                       \
    DYNOFA_DW_CASE(5, 1, F, __VA_ARGS__) DYNOFA_DW_CASE(5, 2, F, __VA_ARGS__)                       \
    DYNOFA_DW_CASE(7, 1, F, __VA_ARGS__) DYNOFA_DW_CASE(7, 2, F, __VA_ARGS__)

// Both depthwise kernels' arguments; `per_tile` is dynofa_depthwise's (a region tile is fixed by
// the stride).
#define DYNOFA_DEPTHWISE_PARAMS                                                                            \
    const float *__restrict__ in, int size, int c, const float *__restrict__ w, int ldw, int k, int stride, \
        int osize, int per_tile, const float *__restrict__ scale, const float *__restrict__ shift, int act, \
        float *__restrict__ out, float *__restrict__ partial
#define DYNOFA_DEPTHWISE_ARGS in, size, c, w, ldw, k, stride, osize, per_tile, scale, shift, act, out, partial

// The SE sums' staging; for dynofa_depthwise_region also the region, one array for every
// instantiation (each would otherwise reserve its own).
struct DwShared {
    float sums[DW_ROWS][DW_CH];
};
struct DwRegionShared {
    float region[DWR_PIXELS * DW_CH];
    float taps[49 * DW_CH];
    float sums[DW_ROWS][DW_CH];
};

template <class B>
__device__ __forceinline__ void depthwise(const B& b, DwShared* shm, DYNOFA_DEPTHWISE_PARAMS) {
    DYNOFA_DW_DISPATCH(depthwise_runs, b, in, size, c, w, ldw, osize, per_tile, scale, shift, act, out, partial,
                       shm->sums)
}

extern "C" __global__ void dynofa_depthwise(DYNOFA_DEPTHWISE_PARAMS) {
    __shared__ DwShared shm;
    depthwise(HwBlock(), &shm, DYNOFA_DEPTHWISE_ARGS);
}

template <class B>
__device__ __forceinline__ void depthwise_region_any(const B& b, DwRegionShared* shm, DYNOFA_DEPTHWISE_PARAMS) {
    DYNOFA_DW_DISPATCH(depthwise_region, b, in, size, c, w, ldw, osize, scale, shift, act, out, partial, shm->region,
                       shm->taps, shm->sums)
}

extern "C" __global__ void dynofa_depthwise_region(DYNOFA_DEPTHWISE_PARAMS) {
    __shared__ DwRegionShared shm;
    depthwise_region_any(HwBlock(), &shm, DYNOFA_DEPTHWISE_ARGS);
}

// Arguments: the expansion's (input, size, in, weights, ldwe, BN, act), then dynofa_depthwise's
// less its input and `per_tile`. Two blocks per multiprocessor at least: uncapped, ptxas took 148
// registers (the 7x7 taps, the region's sums and the staged inputs), room for one.
struct ExpandDwShared {
    float4 buf[EDW_FLOATS / 4];
    float sums[DW_ROWS][DW_CH];
};

template <class B>
__device__ __forceinline__ void expand_depthwise_any(const B& b, ExpandDwShared* shm,
                                                     const float* __restrict__ x, int size, int in,
                                                     const float* __restrict__ we, int ldwe,
                                                     const float* __restrict__ escale,
                                                     const float* __restrict__ eshift, int eact, int c,
                                                     const float* __restrict__ w, int ldw, int k, int stride,
                                                     int osize, const float* __restrict__ scale,
                                                     const float* __restrict__ shift, int act,
                                                     float* __restrict__ out, float* __restrict__ partial) {
    DYNOFA_DW_DISPATCH(expand_depthwise, b, x, size, in, we, ldwe, escale, eshift, eact, c, w, ldw, osize, scale,
                       shift, act, out, partial, reinterpret_cast<float*>(shm->buf), shm->sums)
}

extern "C" __global__ void __launch_bounds__(DW_CH * DW_ROWS, 2)
    dynofa_expand_depthwise(const float* __restrict__ x, int size, int in, const float* __restrict__ we, int ldwe,
                            const float* __restrict__ escale, const float* __restrict__ eshift, int eact, int c,
                            const float* __restrict__ w, int ldw, int k, int stride, int osize,
                            const float* __restrict__ scale, const float* __restrict__ shift, int act,
                            float* __restrict__ out, float* __restrict__ partial) {
    __shared__ ExpandDwShared shm;
    expand_depthwise_any(HwBlock(), &shm, x, size, in, we, ldwe, escale, eshift, eact, c, w, ldw, k, stride, osize,
                         scale, shift, act, out, partial);
}

// The depthwise layer and the projection after it in one kernel, for blocks without SE whose
// projection has at most DP_MAX_OUT output channels (the first unit's, on the largest maps): the
// depthwise output never goes through memory, and a launch is saved. A block computes a tile of
// DP_ROWS output rows x DP_COLS1 (stride 1) or DP_COLS2 columns with every channel, DW_CH
// channels at a time: it stages the chunk's input region, taps, BN and projection rows in shared
// memory (the next chunk's loads in flight while it computes this one), thread (lane, y)
// computes the depthwise run of tile row y / 2, columns (y % 2) * RUN on, for channel lane (as
// dynofa_depthwise_region does), then output channel lane of the same pixels adds the chunk's
// share of the projection (every lane reading the same depthwise value: a broadcast). The
// projection's sums run over the channels in order. `in` ([size][size][c]) is the expansion's
// output, `wp` `[c][ldwp]` the projection's weights, `res` ([osize][osize][n]) may be null.
template <int K, int S>
struct DpTile {
    static constexpr int TW = S == 1 ? DP_COLS1 : DP_COLS2, RUN = TW / 2, RH = (DP_ROWS - 1) * S + K,
                         RW = (TW - 1) * S + K, PIXELS = RH * RW, QUADS = DW_CH / 4,
                         LOADS = (PIXELS * QUADS + DW_CH * DW_ROWS - 1) / (DW_CH * DW_ROWS),
                         TAPS = (K * K + DW_ROWS - 1) / DW_ROWS, SEG = (RUN - 1) * S + K;
    static_assert(PIXELS <= DP_PIXELS && DP_ROWS * TW <= DP_MAX_PIXELS && DW_ROWS == 2 * DP_ROWS, "the tile fits");
};
// The chunk's region ([pixel][DW_CH]) and projection rows ([k][DP_MAX_OUT]), both staged 4
// channels at a time (c and n are multiples of 4: the plan checks), taps ([tap][DW_CH]), BN, and
// its depthwise outputs ([pixel][DW_CH]).
struct DpShared {
    float4 region[DP_PIXELS * DW_CH / 4];
    float4 wp[DW_CH * DP_MAX_OUT / 4];
    float taps[49 * DW_CH];
    float bn[2][DW_CH];
    float dwt[DP_MAX_PIXELS][DW_CH];
};
template <int K, int S, class B>
__device__ __forceinline__ void depthwise_project(const B& b, DpShared* shm, const float* __restrict__ in, int size,
                                                  int c, const float* __restrict__ w, int ldw, int osize,
                                                  const float* __restrict__ scale, const float* __restrict__ shift,
                                                  int act, const float* __restrict__ wp, int ldwp, int n,
                                                  const float* __restrict__ pscale,
                                                  const float* __restrict__ pshift, int pact,
                                                  const float* __restrict__ res, float* __restrict__ out) {
    using G = DpTile<K, S>;
    constexpr int THREADS = DW_CH * DW_ROWS, WLOADS = DW_CH * DP_MAX_OUT / 4 / THREADS;
    static_assert(WLOADS * THREADS * 4 == DW_CH * DP_MAX_OUT, "projection rows per thread");
    int lane = b.tx(), ty = b.ty(), tid = ty * DW_CH + lane;
    int oy0, ox0;
    dw_tile_origin<DP_ROWS, G::TW>(b, osize, oy0, ox0);
    int iy0 = oy0 * S - K / 2, ix0 = ox0 * S - K / 2;
    int ry = ty / 2, rx = ty % 2 * G::RUN;
    // Registers between a chunk's loads and its staging; the region and the projection rows in
    // 4-channel loads (a quarter of the addresses and predicates that ptxas would keep live).
    const float4 zero = float4{0.0f, 0.0f, 0.0f, 0.0f};
    float4 vr[G::LOADS], vw[WLOADS];
    float vt[G::TAPS], vb;
    auto fetch_weights = [&](int c0) {
        int ch = c0 + lane;
#pragma unroll
        for (int l = 0; l < G::TAPS; ++l) {
            int tap = ty + l * DW_ROWS;
            vt[l] = tap < K * K && ch < c ? ld_w(&w[tap * ldw + ch]) : 0.0f;
        }
        vb = ty < 2 && ch < c ? ld_w(&(ty == 0 ? scale : shift)[ch]) : 0.0f;
#pragma unroll
        for (int l = 0; l < WLOADS; ++l) {
            int e = tid + l * THREADS, i = c0 + e / (DP_MAX_OUT / 4), o = e % (DP_MAX_OUT / 4) * 4;
            vw[l] = i < c && o < n ? ld_w<float4>(wp + (long)i * ldwp + o) : zero;
        }
    };
    auto fetch_region = [&](int c0) {
#pragma unroll
        for (int l = 0; l < G::LOADS; ++l) {
            int e = tid + l * THREADS, px = e / G::QUADS, ch = c0 + e % G::QUADS * 4;
            int iy = iy0 + px / G::RW, ix = ix0 + px % G::RW;
            bool inside = px < G::PIXELS && ch < c && iy >= 0 && iy < size && ix >= 0 && ix < size;
            vr[l] = inside ? ld_act<float4>(in + ((long)iy * size + ix) * c + ch) : zero;
        }
    };
    float ps = lane < n ? ld_w(&pscale[lane]) : 0.0f, pt = lane < n ? ld_w(&pshift[lane]) : 0.0f;
    fetch_weights(0);
    dyn_wait(b);
    fetch_region(0);
    float acc[G::RUN];
#pragma unroll
    for (int r = 0; r < G::RUN; ++r) acc[r] = 0.0f;
    for (int c0 = 0; c0 < c; c0 += DW_CH) {
        // The previous chunk's readers passed the barrier that ends its iteration.
#pragma unroll
        for (int l = 0; l < G::LOADS; ++l)
            if (tid + l * THREADS < G::PIXELS * G::QUADS) shm->region[tid + l * THREADS] = vr[l];
#pragma unroll
        for (int l = 0; l < G::TAPS; ++l)
            if (ty + l * DW_ROWS < K * K) shm->taps[(ty + l * DW_ROWS) * DW_CH + lane] = vt[l];
        if (ty < 2) shm->bn[ty][lane] = vb;
#pragma unroll
        for (int l = 0; l < WLOADS; ++l) shm->wp[tid + l * THREADS] = vw[l];
        dyn_sync(b);
        if (c0 + DW_CH < c) {
            fetch_weights(c0 + DW_CH);
            fetch_region(c0 + DW_CH);
        }
        float d[G::RUN];
#pragma unroll
        for (int r = 0; r < G::RUN; ++r) d[r] = 0.0f;
        // Rows one at a time and the projection 4 channels at a time: ptxas then keeps every
        // instantiation within 128 registers (unrolled, it spilled with the next chunk's loads in
        // flight).
#pragma unroll 1
        for (int dy = 0; dy < K; ++dy) {
            const float* row = reinterpret_cast<const float*>(shm->region) + ((ry * S + dy) * G::RW + rx * S) * DW_CH + lane;
            float seg[G::SEG], taps[K];
#pragma unroll
            for (int x = 0; x < G::SEG; ++x) seg[x] = row[x * DW_CH];
#pragma unroll
            for (int dx = 0; dx < K; ++dx) taps[dx] = shm->taps[(dy * K + dx) * DW_CH + lane];
            dw_accumulate<K, S, G::RUN>(seg, taps, d);
        }
        float s = shm->bn[0][lane], t = shm->bn[1][lane];
#pragma unroll
        for (int r = 0; r < G::RUN; ++r) shm->dwt[ry * G::TW + rx + r][lane] = dynofa_act(d[r] * s + t, act);
        dyn_sync(b);
#pragma unroll 4
        for (int i = 0; i < DW_CH; ++i) {
            float wv = reinterpret_cast<const float*>(shm->wp)[i * DP_MAX_OUT + lane];
#pragma unroll
            for (int r = 0; r < G::RUN; ++r) acc[r] += shm->dwt[ry * G::TW + rx + r][i] * wv;
        }
        dyn_sync(b);
    }
    DYNOFA_LAUNCH_DEPENDENTS();
    int oy = oy0 + ry;
#pragma unroll
    for (int r = 0; r < G::RUN; ++r) {
        int ox = ox0 + rx + r;
        if (lane >= n || oy >= osize || ox >= osize) continue;
        long at = ((long)oy * osize + ox) * n + lane;
        float v = dynofa_act(acc[r] * ps + pt, pact);
        out[at] = res ? v + ld_act(&res[at]) : v;
    }
}

// Arguments: dynofa_depthwise_region's less `per_tile` and `partial`, then the projection's
// (weights, ldwp, n, BN, act, residual) and the output.
#define DYNOFA_DEPTHWISE_PROJECT_PARAMS                                                                    \
    const float *__restrict__ in, int size, int c, const float *__restrict__ w, int ldw, int k, int stride, \
        int osize, const float *__restrict__ scale, const float *__restrict__ shift, int act,              \
        const float *__restrict__ wp, int ldwp, int n, const float *__restrict__ pscale,                  \
        const float *__restrict__ pshift, int pact, const float *__restrict__ res, float *__restrict__ out
template <class B>
__device__ __forceinline__ void depthwise_project_any(const B& b, DpShared* shm, DYNOFA_DEPTHWISE_PROJECT_PARAMS) {
    DYNOFA_DW_DISPATCH(depthwise_project, b, shm, in, size, c, w, ldw, osize, scale, shift, act, wp, ldwp, n, pscale,
                       pshift, pact, res, out)
}

extern "C" __global__ void __launch_bounds__(DW_CH * DW_ROWS, 2)
    dynofa_depthwise_project(DYNOFA_DEPTHWISE_PROJECT_PARAMS) {
    __shared__ DpShared shm;
    depthwise_project_any(HwBlock(), &shm, in, size, c, w, ldw, k, stride, osize, scale, shift, act, wp, ldwp, n,
                          pscale, pshift, pact, res, out);
}

// A fully connected layer: out[o] = act(sum_i x[i] * w[o * ldw + i] + bias[o]) for o < rows, i < cols,
// where x[i] = xscale * sum_t parts[t * ldp + i] over t < nparts (nparts = 1, xscale = 1: a plain
// vector; else a mean over pixels or over depthwise tiles, the pooling fused here). One warp-sized
// group of MV_LANES threads per row; `bias` may be null; cols <= MV_MAX_COLS = MV_PRE * MV_LANES.
// A row's weights are loaded before waiting for the previous kernel, into registers. After
// the wait, each thread sums its columns of `parts` MV_BATCH columns at a time, all their loads in
// flight together (one column at a time, the feature-mix layer's 1152 columns of 13 parts cost a
// thread ten dependent round trips; MV_BATCH = 3 makes it four). Two blocks per multiprocessor
// at least: one would make the feature-mix layer's 192 blocks two rounds on an H100's 132
// multiprocessors (with 4 columns at a time ptxas took 144 registers, room for one block).
struct MatvecShared {
    float x[MV_MAX_COLS];
    float red[MV_THREADS];
};
template <class B>
__device__ __forceinline__ void matvec(const B& b, MatvecShared* shm, const float* __restrict__ parts,
                                       int nparts, int ldp, float xscale, const float* __restrict__ w, int ldw,
                                       int rows, int cols, const float* __restrict__ bias, int act,
                                       float* __restrict__ out) {
    float *x = shm->x, *red = shm->red;
    int tid = b.tx();
    int lane = tid % MV_LANES, row = b.bx() * MV_ROWS + tid / MV_LANES;
    const float* wr = w + (long)(row < rows ? row : 0) * ldw;
    float pre[MV_PRE];
#pragma unroll
    for (int u = 0; u < MV_PRE; ++u) {
        int i = lane + u * MV_LANES;
        pre[u] = row < rows && i < cols ? ld_w(&wr[i]) : 0.0f;
    }
    float bv = bias && row < rows ? ld_w(&bias[row]) : 0.0f;
    dyn_wait(b);
    for (int i0 = tid; i0 < cols; i0 += MV_BATCH * MV_THREADS) {
        float sum[MV_BATCH];
#pragma unroll
        for (int j = 0; j < MV_BATCH; ++j) sum[j] = 0.0f;
        for (int t0 = 0; t0 < nparts; t0 += 8) {
            float v[MV_BATCH][8];
#pragma unroll
            for (int j = 0; j < MV_BATCH; ++j)
#pragma unroll
                for (int u = 0; u < 8; ++u) {
                    int i = i0 + j * MV_THREADS;
                    v[j][u] = i < cols && t0 + u < nparts ? ld_act(&parts[(long)(t0 + u) * ldp + i]) : 0.0f;
                }
            // Parts in order t = 0, 1, ...: deterministic.
#pragma unroll
            for (int j = 0; j < MV_BATCH; ++j)
#pragma unroll
                for (int u = 0; u < 8; ++u) sum[j] += v[j][u];
        }
#pragma unroll
        for (int j = 0; j < MV_BATCH; ++j)
            if (i0 + j * MV_THREADS < cols) x[i0 + j * MV_THREADS] = sum[j] * xscale;
    }
    dyn_sync(b);
    // x past cols (stale) is selected away, not branched around: a branch for each of the MV_PRE
    // columns had made the product 48 branches long (sm_90 SASS). pre[u] is 0 there.
    float acc = 0.0f;
    const float* xl = x + lane;
    int left = cols - lane;
#pragma unroll
    for (int u = 0; u < MV_PRE; ++u) {
        float xv = xl[u * MV_LANES];
        acc += (u * MV_LANES < left ? xv : 0.0f) * pre[u];
    }
    DYNOFA_LAUNCH_DEPENDENTS();
    red[tid] = acc;
    dyn_sync(b);
    if (lane == 0 && row < rows) {
        float v = bv;
        for (int l = 0; l < MV_LANES; ++l) v += red[tid + l];
        out[row] = dynofa_act(v, act);
    }
}

extern "C" __global__ void __launch_bounds__(MV_THREADS, 2)
    dynofa_matvec(const float* __restrict__ parts, int nparts, int ldp, float xscale, const float* __restrict__ w,
                  int ldw, int rows, int cols, const float* __restrict__ bias, int act, float* __restrict__ out) {
    __shared__ MatvecShared shm;
    matvec(HwBlock(), &shm, parts, nparts, ldp, xscale, w, ldw, rows, cols, bias, act, out);
}

// ------------------------------------------------------------------------------------------------
// Every launch of a plan in one cooperative launch (GpuOptions::persistent): a block per
// multiprocessor (all resident, as a cooperative launch guarantees), each running the blocks of
// launch i as the kernel would, then arriving at a barrier across the GPU; launch i + 1's blocks
// wait for it where a graph's kernel waits for the previous one (dyn_wait: after loading what no
// launch writes). A barrier is one atomic add per block and a poll, where a graph pays a node.
// A physical block runs several launch blocks at once where their threads and shared memory fit
// (groups: four of 128 threads, two of 256), as a multiprocessor runs several blocks of a graph's
// kernel; group g of physical block p runs launch blocks p + g * gridDim.x, then that plus
// groups * gridDim.x, ..., so that a launch of fewer blocks than multiprocessors still spreads
// over all of them. Threads past the groups idle.

// One launch, as dynofa_kernels' gpu::persistent_steps writes it: the kernel (its place in
// DYNOFA_KERNELS), grid and block, then the argument slots as cuLaunchKernel takes their values (8
// bytes each: a pointer, or an int or float in the first 4).
struct DynStep {
    unsigned kernel, gx, gy, gz, dx, dy, unused[2];
    unsigned long long slot[DYN_SLOTS];
};

// A slot as the body's parameter type.
template <class T>
struct Slot;
template <class T>
struct Slot<T*> {
    static __device__ __forceinline__ T* get(unsigned long long v) { return reinterpret_cast<T*>(v); }
};
template <>
struct Slot<int> {
    static __device__ __forceinline__ int get(unsigned long long v) { return (int)(unsigned)v; }
};
template <>
struct Slot<float> {
    static __device__ __forceinline__ float get(unsigned long long v) { return __uint_as_float((unsigned)v); }
};

template <int... I>
struct Seq {};
template <int N, int... I>
struct MakeSeq : MakeSeq<N - 1, N - 1, I...> {};
template <int... I>
struct MakeSeq<0, I...> {
    typedef Seq<I...> type;
};

__host__ __device__ constexpr unsigned dyn_min(unsigned a, unsigned b) { return a < b ? a : b; }

template <class S, class... A, int... I>
__device__ __forceinline__ void dyn_call(void (*body)(const PersistentBlock&, S*, A...), const PersistentBlock& b,
                                         S* shared, const unsigned long long* slot, Seq<I...>) {
    body(b, shared, Slot<A>::get(slot[I])...);
}

// What a launch block does with its kernel's body: learn its shared memory (16-byte words)...
struct DynWords {
    unsigned words;
    template <class S, class... A>
    __device__ __forceinline__ void operator()(void (*)(const PersistentBlock&, S*, A...)) {
        words = (unsigned)(sizeof(S) + 15) / 16;
    }
};
// ...and run it.
struct DynCall {
    const PersistentBlock& b;
    float4* shared;
    const unsigned long long* slot;
    template <class S, class... A>
    __device__ __forceinline__ void operator()(void (*body)(const PersistentBlock&, S*, A...)) {
        static_assert(sizeof...(A) <= DYN_SLOTS, "more arguments than a DynStep holds");
        // One group's share at least (the engine gives the kernel DYN_BODY_SHARED or more).
        static_assert(sizeof(S) <= DYN_BODY_SHARED, "a body's shared memory outgrew DYN_BODY_SHARED");
        DYN_EMU_BODY();
        dyn_call(body, b, reinterpret_cast<S*>(shared), slot, typename MakeSeq<sizeof...(A)>::type());
    }
};

// `op` on kernel `kernel`'s body. An unknown kernel traps (the plan and this list disagree).
template <class Op>
__device__ __forceinline__ void dyn_kernel(unsigned kernel, Op& op) {
    switch (kernel) {
    case DYNOFA_KID_dynofa_stem:
        return op(stem<PersistentBlock>);
    case DYNOFA_KID_dynofa_stem_block:
        return op(stem_block<PersistentBlock>);
    case DYNOFA_KID_dynofa_pointwise:
        return op(pointwise_tile<PW_BM, PW_BN, PW_TM, PW_TN, 1, false, PersistentBlock>);
    case DYNOFA_KID_dynofa_pointwise_small:
        return op(pointwise_tile<PWS_BM, PWS_BN, PWS_TM, PWS_TN, 1, false, PersistentBlock>);
    case DYNOFA_KID_dynofa_pointwise_ksplit:
        return op(pointwise_tile<PWS_BM, PWS_BN, PWS_TM, PWS_TN, PWK_KS, false, PersistentBlock>);
    case DYNOFA_KID_dynofa_pointwise_mma:
        return op(pointwise_tile<PWS_BM, PWS_BN, PWS_TM, PWS_TN, PWM_GROUPS, true, PersistentBlock>);
    case DYNOFA_KID_dynofa_pointwise_warps:
        return op(pointwise_warps<PWW_TM, PWW_KC, PWW_KC * PWW_WARPS, PersistentBlock>);
    case DYNOFA_KID_dynofa_pointwise_warps16:
        return op(pointwise_warps<PWW16_TM, PWW16_KC, PWW16_KC * PWW_WARPS, PersistentBlock>);
    case DYNOFA_KID_dynofa_depthwise:
        return op(depthwise<PersistentBlock>);
    case DYNOFA_KID_dynofa_depthwise_region:
        return op(depthwise_region_any<PersistentBlock>);
    case DYNOFA_KID_dynofa_expand_depthwise:
        return op(expand_depthwise_any<PersistentBlock>);
    case DYNOFA_KID_dynofa_depthwise_project:
        return op(depthwise_project_any<PersistentBlock>);
    case DYNOFA_KID_dynofa_matvec:
        return op(matvec<PersistentBlock>);
    default:
        __trap();
    }
}

// `steps` ([nsteps]) as above; `arrived` ([2], zero at the first launch) counts arrivals and the
// blocks that finished, and the last block to finish zeroes both for the next launch. Kernels
// that never wait (the stem) come first only (the plan checks), and at most DYN_MAX_STEPS: the
// table is read once into shared memory, where a launch's record is then a shared load rather
// than a round trip to L2. Dynamic shared memory: at least DYN_BODY_SHARED bytes, which the groups
// share. With `trace` ([nsteps][gridDim.x][2], else null), each block notes (dyn_now) when it saw
// launch i - 1 done everywhere (for i = 0: when it started) and when it arrived after launch i (for
// the last: when it finished it), where the time between launches goes
// (GpuEngine::persistent_trace).
extern "C" __global__ void __launch_bounds__(DYN_THREADS, 1)
    dynofa_persistent(const DynStep* __restrict__ steps, int nsteps, unsigned* arrived, unsigned long long* trace,
                      int release_acquire) {
    DYN_DYNAMIC_SHARED(float4, room);
    DYN_BLOCK_SHARED(DynStep, table, DYN_MAX_STEPS);
    DYN_BLOCK_SHARED(DynBarrier, barrier, 1);
    const unsigned tid = threadIdx.x, blocks = gridDim.x, room_bytes = dyn_shared_bytes();
    // A longer table than the kernel holds (the engine refuses such plans).
    if (nsteps > DYN_MAX_STEPS) __trap();
    const unsigned long long* src = reinterpret_cast<const unsigned long long*>(steps);
    unsigned long long* dst = reinterpret_cast<unsigned long long*>(table);
    for (unsigned e = tid; e < nsteps * (sizeof(DynStep) / 8); e += DYN_THREADS) dst[e] = src[e];
    const bool ra = release_acquire != 0;
    if (tid == 0) {
        barrier->arrived = arrived;
        barrier->trace = trace;
        barrier->release_acquire = ra;
        if (trace) trace[blockIdx.x * 2] = dyn_now();
    }
    if (tid < DYN_MAX_GROUPS) barrier->seen[tid] = 0;
    __syncthreads();
    for (int i = 0; i < nsteps; ++i) {
        const DynStep& s = table[i];
        const unsigned target = (unsigned)i * blocks;
        // This thread's group, and the group's share of the room.
        DynWords need{0};
        dyn_kernel(s.kernel, need);
        const unsigned threads = s.dx * s.dy, total = s.gx * s.gy * s.gz;
        const unsigned groups = dyn_min(dyn_min(DYN_THREADS / threads, DYN_MAX_GROUPS), room_bytes / 16 / need.words);
        // Less shared memory than one launch block needs (the engine gives enough).
        if (groups == 0) __trap();
        const unsigned group = tid / threads, t = tid % threads;
        if (group < groups) {
            for (unsigned v = blockIdx.x + group * blocks; v < total; v += groups * blocks) {
                PersistentBlock b{{v % s.gx, v / s.gx % s.gy, v / (s.gx * s.gy), s.gx, s.gy, s.gz, t % s.dx, t / s.dx,
                                   s.dx, s.dy},
                                  group,
                                  target,
                                  barrier};
                DynCall call{b, room + group * need.words, s.slot};
                dyn_kernel(s.kernel, call);
                // The group's next launch block reuses its shared memory.
                dyn_sync(b);
            }
        }
        // Every group done before the block arrives (the others go on to the next launch, whose
        // reads wait for the barrier).
        __syncthreads();
        if (tid == 0) {
            // Not before every block arrived for the launch before (a block without work in this
            // one has not waited yet): an early arrival would count towards the wrong launch.
            unsigned long long* noted = trace ? trace + (target + blockIdx.x) * 2ull : nullptr;
            dyn_await(arrived, target, &barrier->seen[0], noted, ra);
            if (noted) noted[1] = dyn_now();
            if (i + 1 < nsteps) dyn_arrive(arrived, ra);
        }
    }
    if (tid == 0 && atomicAdd(arrived + 1, 1u) == blocks - 1) {
        arrived[0] = 0;
        arrived[1] = 0;
    }
}

// ------------------------------------------------------------------------------------------------
// Measurement only (GpuEngine::grid_barrier; gpu::GRID_BARRIER), not part of any plan: `rounds`
// barriers across the whole grid, which a cooperative launch keeps resident. Thread 0 of a block
// arrives by adding 1 to count[0] (zero at launch) and waits until every block has arrived for the
// round: what a persistent kernel running every layer would pay between two layers instead of a
// graph node, ordered as `release_acquire` says (dyn_arrive). The wait is bounded: should the
// blocks not all be resident after all, a block sets count[1] and every block returns, rather than
// spin forever.
extern "C" __global__ void dynofa_grid_barrier(unsigned* count, int rounds, int release_acquire) {
    volatile unsigned* gave_up = count + 1;
    const bool ra = release_acquire != 0;
    for (int r = 1; r <= rounds; ++r) {
        __syncthreads();
        if (threadIdx.x == 0) {
            dyn_arrive(count, ra);
            unsigned target = (unsigned)r * gridDim.x;
            for (unsigned spins = 0; dyn_poll(count, ra) < target && !*gave_up; ++spins)
                if (spins == (1u << 20)) *gave_up = 1u;
            dyn_acquired(ra);
        }
        __syncthreads();
        if (*gave_up) return;
    }
}
