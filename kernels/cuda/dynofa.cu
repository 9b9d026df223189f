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
// every thread of a block), fminf/fmaxf, float4 (aligned loads of float buffers), for split GEMMs
// atomicAdd on a ticket counter, __threadfence and __ldcg, and on sm_90 the griddepcontrol
// instructions (DYNOFA_WAIT_PREVIOUS). No warp shuffles, and no sum depends on the order in which
// blocks or warps run: results are deterministic.

// The tile sizes (PW_*, PWS_*, PWW_*, DW_*, DWR_*, MV_*) are defined by the launch plan
// (dynofa-kernels' gpu module), which prepends them to this source, so the plan and the kernels
// cannot disagree.
#if !defined(PW_BM) || !defined(DW_ROWS) || !defined(MV_ROWS)
#error "compile this source through dynofa_kernels::gpu::source(), which defines the tile sizes"
#endif

// Programmatic dependent launch (sm_90 and newer, when the engine launches with it): a kernel's
// blocks may be scheduled while the kernel before it finishes. Every kernel loads what no kernel
// writes (weights, BN) first, then waits for the previous kernel's results (and memory) before it
// reads activations (waiting for the previous kernel waits for every kernel before it), and lets
// the next one be scheduled once its main loop is done. Without such a launch, on older GPUs and in the host
// emulation these are nothing.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define DYNOFA_LAUNCH_DEPENDENTS() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#define DYNOFA_WAIT_PREVIOUS() asm volatile("griddepcontrol.wait;" ::: "memory")
#else
#define DYNOFA_LAUNCH_DEPENDENTS()
#define DYNOFA_WAIT_PREVIOUS()
#endif

// sum_{t < n} p[t * stride], added in the order t = 0, 1, ... (deterministic) with up to 8 loads in
// flight (one dependent round trip to memory per element was the cost). THROUGH_L2 (__ldcg) for
// what other multiprocessors wrote during the same launch (a split GEMM's slices).
template <bool THROUGH_L2>
__device__ __forceinline__ float dynofa_sum_strided(const float* p, long stride, int n) {
    float sum = 0.0f;
    for (int t0 = 0; t0 < n; t0 += 8) {
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const float* q = p + (t0 + u) * stride;
            v[u] = t0 + u >= n ? 0.0f : THROUGH_L2 ? __ldcg(q) : *q;
        }
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

// first_conv: 3x3, stride 2, padding 1 over the NCHW image `in` ([3][r][r]) + BN + h_swish into
// NHWC `out` ([o][o][c]). A thread computes STEM_CH channels of a pixel (c is a multiple; the plan
// checks it), so that a pixel's 27 inputs are loaded once for them; `w` is `[27][ldw]` with rows
// ci*9 + dy*3 + dx.
extern "C" __global__ void dynofa_stem(const float* __restrict__ in, int r, int o, const float* __restrict__ w,
                                       int ldw, int c, const float* __restrict__ scale,
                                       const float* __restrict__ shift, float* __restrict__ out) {
    // The first kernel: it follows the input copy, never a kernel.
    DYNOFA_LAUNCH_DEPENDENTS();
    int groups = c / STEM_CH, idx = blockIdx.x * blockDim.x + threadIdx.x;
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
        float x = in[(ci * r + iy) * r + ix];
#pragma unroll
        for (int j = 0; j < STEM_CH; ++j) acc[j] += x * w[t * ldw + ch0 + j];
    }
#pragma unroll
    for (int j = 0; j < STEM_CH; ++j)
        out[(long)p * c + ch0 + j] = dynofa_act(acc[j] * scale[ch0 + j] + shift[ch0 + j], ACT_HSWISH);
}

// The stem and the first block in one kernel, for an SB_TILE x SB_TILE tile of the s x s map per
// block: first_conv + BN + h_swish over the tile and a ring of one pixel (zeros outside the map:
// the depthwise padding), the depthwise 3x3 + BN + ReLU, then the 1x1 `[c][ldwp]` + BN (no
// activation) with the stem's output added where `residual`, into NHWC `out` ([s][s][c1]). Three
// launches with their round trips through memory were 6.8 µs (min) to 11 µs (max) on an H100;
// every stage here reads shared memory. c and c1 are multiples of 4, at most SB_CH (the plan
// checks); weights as dynofa_stem, dynofa_depthwise and dynofa_pointwise take them; the sums run in
// their order. The first kernel, like dynofa_stem: it follows the input copy, never a kernel.
extern "C" __global__ void __launch_bounds__(SB_THREADS)
    dynofa_stem_block(const float* __restrict__ in, int r, int s, const float* __restrict__ ws, int ldws, int c,
                      const float* __restrict__ s_scale, const float* __restrict__ s_shift,
                      const float* __restrict__ wd, int ldwd, const float* __restrict__ d_scale,
                      const float* __restrict__ d_shift, const float* __restrict__ wp, int ldwp, int c1,
                      const float* __restrict__ p_scale, const float* __restrict__ p_shift, int residual,
                      float* __restrict__ out) {
    constexpr int SR = SB_TILE + 2, IR = 2 * SR + 1, Q = SB_CH / 4;
    // Input patch ([3][IR][IR]), weights and BN ([row][SB_CH], rows: 27 stem, 9 taps, c 1x1, 6 BN),
    // the stem's ring ([SR * SR][SB_CH]) and the depthwise tile ([SB_TILE^2][SB_CH]).
    constexpr int PATCH = 3 * IR * IR, WROWS = 27 + 9 + SB_CH + 6;
    __shared__ float xin[PATCH];
    __shared__ float4 wq[WROWS * Q];
    __shared__ float4 st[SR * SR * Q];
    __shared__ float4 dq[SB_TILE * SB_TILE * Q];
    DYNOFA_LAUNCH_DEPENDENTS();
    int tid = threadIdx.x, per_row = (s + SB_TILE - 1) / SB_TILE;
    int y0 = blockIdx.x / per_row * SB_TILE, x0 = blockIdx.x % per_row * SB_TILE;
    // Every load in flight before any store: one round trip to memory.
    constexpr int PLOADS = (PATCH + SB_THREADS - 1) / SB_THREADS;
    constexpr int WLOADS = (WROWS * SB_CH + SB_THREADS - 1) / SB_THREADS;
    float pv[PLOADS], wv[WLOADS];
#pragma unroll
    for (int l = 0; l < PLOADS; ++l) {
        int e = tid + l * SB_THREADS, ci = e / (IR * IR), yy = e / IR % IR, xx = e % IR;
        int iy = 2 * (y0 - 1) - 1 + yy, ix = 2 * (x0 - 1) - 1 + xx;
        pv[l] = e < PATCH && iy >= 0 && iy < r && ix >= 0 && ix < r ? in[(ci * r + iy) * r + ix] : 0.0f;
    }
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
        wv[l] = real ? src[ch] : 0.0f;
    }
#pragma unroll
    for (int l = 0; l < PLOADS; ++l)
        if (tid + l * SB_THREADS < PATCH) xin[tid + l * SB_THREADS] = pv[l];
    float* wf = reinterpret_cast<float*>(wq);
#pragma unroll
    for (int l = 0; l < WLOADS; ++l)
        if (tid + l * SB_THREADS < WROWS * SB_CH) wf[tid + l * SB_THREADS] = wv[l];
    __syncthreads();
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
    __syncthreads();

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
    __syncthreads();

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
template <int BM, int BN, int TM, int TN>
__device__ __forceinline__ void pointwise_tile(const float* __restrict__ a, int m, int k,
                                               const float* __restrict__ w, int ldw, int n,
                                               const float* __restrict__ scale, const float* __restrict__ shift,
                                               int act, const float* __restrict__ gate,
                                               const float* __restrict__ res, float* __restrict__ out,
                                               float* __restrict__ pool, int kc, float* __restrict__ split,
                                               unsigned* __restrict__ tickets) {
    constexpr int COLS = BN / TN, THREADS = (BM / TM) * COLS;
    constexpr int A_LOADS = BM * PW_BK / THREADS, B_LOADS = PW_BK * BN / THREADS;
    static_assert(A_LOADS * THREADS == BM * PW_BK && B_LOADS * THREADS == PW_BK * BN, "tile loads");
    static_assert(BM % 16 == 0 && PW_BK == 16, "the padding below assumes these");
    // Two stages: threads store the next step's tiles while others still read this one's, one
    // barrier per step. `as` rows are padded by 2: a warp stores 16 channels of 2 pixels, which
    // then land in 32 different banks.
    __shared__ float as[2][PW_BK][BM + 2];
    __shared__ float bs[2][PW_BK][BN];
    __shared__ float gs[PW_MAX_GATE];
    __shared__ int last;
    int tid = threadIdx.x;
    int tx = tid % COLS, ty = tid / COLS;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    int kbeg = blockIdx.z * kc, kend = kbeg + kc < k ? kbeg + kc : k;
    float acc[TM][TN];
    #pragma unroll
    for (int i = 0; i < TM; ++i)
        #pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    // A step's tiles go through registers: the loads of step s + 1 are issued before step s's
    // arithmetic, which hides their latency. Consecutive threads read consecutive input channels
    // of a pixel (a) or consecutive output channels (w).
    float ra[A_LOADS], rb[B_LOADS];
    auto fetch_w = [&](int k0) {
        #pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            int e = tid + l * THREADS, i = k0 + e / BN, o = n0 + e % BN;
            rb[l] = (i < kend && o < n) ? w[(long)i * ldw + o] : 0.0f;
        }
    };
    auto fetch_a = [&](int k0) {
        #pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            int e = tid + l * THREADS, p = m0 + e / PW_BK, i = k0 + e % PW_BK;
            ra[l] = p < m && i < kend ? a[(long)p * k + i] : 0.0f;
        }
    };
    // Columns are strided by the thread count along n so that a warp stores contiguous channels.
    float es[TN], et[TN];
    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        int o = n0 + tx + j * COLS;
        es[j] = o < n ? scale[o] : 0.0f;
        et[j] = o < n ? shift[o] : 0.0f;
    }
    fetch_w(kbeg);
    DYNOFA_WAIT_PREVIOUS();
    fetch_a(kbeg);
    // The residual is loaded now, its latency hidden by the product.
    float er[TM][TN];
    #pragma unroll
    for (int i = 0; i < TM; ++i)
        #pragma unroll
        for (int j = 0; j < TN; ++j) {
            int o = n0 + tx + j * COLS, p = m0 + ty * TM + i;
            er[i][j] = res && o < n && p < m ? res[(long)p * n + o] : 0.0f;
        }
    // This block's gates, while the first tile's loads are in flight (the SE expand layer, a
    // dynofa_matvec launch, wrote them).
    if (gate) {
        for (int i = kbeg + tid; i < kend; i += THREADS) gs[i - kbeg] = gate[i];
        __syncthreads();
    }
    int steps = (kend - kbeg + PW_BK - 1) / PW_BK;
    for (int s = 0; s <= steps; ++s) {
        if (s > 0 && s < steps) {
            fetch_w(kbeg + s * PW_BK);
            fetch_a(kbeg + s * PW_BK);
        }
        if (s > 0) {
            int cur = (s - 1) & 1;
            #pragma unroll
            for (int kk = 0; kk < PW_BK; ++kk) {
                float av[TM], bv[TN];
                #pragma unroll
                for (int i = 0; i < TM; ++i) av[i] = as[cur][kk][ty * TM + i];
                #pragma unroll
                for (int j = 0; j < TN; ++j) bv[j] = bs[cur][kk][tx + j * COLS];
                #pragma unroll
                for (int i = 0; i < TM; ++i)
                    #pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
            }
        }
        if (s < steps) {
            // Stage s & 1 was last read for step s - 2, before the previous barrier.
            int nxt = s & 1;
            #pragma unroll
            for (int l = 0; l < A_LOADS; ++l) {
                int e = tid + l * THREADS, i = kbeg + s * PW_BK + e % PW_BK;
                as[nxt][e % PW_BK][e / PW_BK] = gate && i < kend ? ra[l] * gs[i - kbeg] : ra[l];
            }
            #pragma unroll
            for (int l = 0; l < B_LOADS; ++l) {
                int e = tid + l * THREADS;
                bs[nxt][e / BN][e % BN] = rb[l];
            }
        }
        __syncthreads();
    }
    DYNOFA_LAUNCH_DEPENDENTS();

    if (gridDim.z > 1) {
        long slice = (long)m * n;
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            #pragma unroll
            for (int i = 0; i < TM; ++i) {
                int o = n0 + tx + j * COLS, p = m0 + ty * TM + i;
                if (o < n && p < m) split[blockIdx.z * slice + (long)p * n + o] = acc[i][j];
            }
        __threadfence();
        __syncthreads();
        if (tid == 0) {
            unsigned* ticket = &tickets[blockIdx.y * gridDim.x + blockIdx.x];
            last = atomicAdd(ticket, 1u) == gridDim.z - 1;
            if (last) *ticket = 0;
        }
        __syncthreads();
        if (!last) return;
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            #pragma unroll
            for (int i = 0; i < TM; ++i) {
                int o = n0 + tx + j * COLS, p = m0 + ty * TM + i;
                bool in = o < n && p < m;
                acc[i][j] = in ? dynofa_sum_strided<true>(&split[(long)p * n + o], slice, gridDim.z) : 0.0f;
            }
    }

    float colsum[TN];
    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        int o = n0 + tx + j * COLS;
        colsum[j] = 0.0f;
        if (o >= n) continue;
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            int p = m0 + ty * TM + i;
            if (p >= m) continue;
            float v = dynofa_act(acc[i][j] * es[j] + et[j], act);
            if (res) v += er[i][j];
            out[(long)p * n + o] = v;
            colsum[j] += v;
        }
    }
    if (!pool) return;
    __shared__ float psum[BM / TM][BN];
    #pragma unroll
    for (int j = 0; j < TN; ++j) psum[ty][tx + j * COLS] = colsum[j];
    __syncthreads();
    for (int col = tid; col < BN; col += THREADS) {
        float total = 0.0f;
        for (int q = 0; q < BM / TM; ++q) total += psum[q][col];
        if (n0 + col < n) pool[(long)blockIdx.y * n + n0 + col] = total;
    }
}

// MINB blocks per multiprocessor at least: uncapped, the large tiling's registers (140) would leave
// room for one, and the small one's (120) for four.
#define DYNOFA_POINTWISE(name, BM, BN, TM, TN, MINB)                                                        \
    extern "C" __global__ void __launch_bounds__((BM / TM) * (BN / TN), MINB)                               \
        name(const float* __restrict__ a, int m, int k, const float* __restrict__ w, int ldw, int n,        \
             const float* __restrict__ scale, const float* __restrict__ shift, int act,                     \
             const float* __restrict__ gate, const float* __restrict__ res, float* __restrict__ out,        \
             float* __restrict__ pool, int kc, float* __restrict__ split, unsigned* __restrict__ tickets) {  \
        pointwise_tile<BM, BN, TM, TN>(a, m, k, w, ldw, n, scale, shift, act, gate, res, out, pool, kc,     \
                                       split, tickets);                                                     \
    }
// Large tiles for layers with many pixels; small ones (more blocks, usually with k split) for the rest.
DYNOFA_POINTWISE(dynofa_pointwise, PW_BM, PW_BN, PW_TM, PW_TN, 2)
DYNOFA_POINTWISE(dynofa_pointwise_small, PWS_BM, PWS_BN, PWS_TM, PWS_TN, 5)

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
// with at most PWW_WARPS warps (warp y < TM also finishes pixel p0 + y). `buf` holds
// max(TM * KMAX / 4, PWW_WARPS * TM * 8) float4. `split` and `tickets` are unused (the same
// arguments as the tiled kernels).
template <int TM, int KC, int KMAX>
__device__ __forceinline__ void pointwise_warps(const float* __restrict__ a, int m, int k, const float* __restrict__ w,
                                                int ldw, int n, const float* __restrict__ scale,
                                                const float* __restrict__ shift, int act,
                                                const float* __restrict__ gate, const float* __restrict__ res,
                                                float* __restrict__ out, float* __restrict__ pool, int kc,
                                                float4* buf) {
    static_assert(KC % 4 == 0 && KMAX % 4 == 0, "float4 steps");
    float* part = reinterpret_cast<float*>(buf);  // [warp][TM][32], after the product
    int lane = threadIdx.x, warp = threadIdx.y, tid = warp * 32 + lane, threads = 32 * blockDim.y;
    int o = blockIdx.x * 32 + lane, p0 = blockIdx.y * TM;
    int kbeg = warp * kc, len = k - kbeg < kc ? k - kbeg : kc;
    float wr[KC];
#pragma unroll
    for (int j = 0; j < KC; ++j) wr[j] = j < len && o < n ? w[(long)(kbeg + j) * ldw + o] : 0.0f;
    // Warp y < TM finishes pixel p0 + y: its epilogue constants now, its residual after the wait.
    bool fin = warp < TM && o < n && p0 + warp < m;
    float es = fin ? scale[o] : 0.0f, et = fin ? shift[o] : 0.0f;
    DYNOFA_WAIT_PREVIOUS();
    float er = fin && res ? res[(long)(p0 + warp) * n + o] : 0.0f;
    // A thread stages at most LOADS quads (threads >= 32 k / kc), all loaded before any is stored.
    constexpr int LOADS = (TM * KC + 127) / 128;
    int quads = k / 4;
    float4 xs[LOADS];
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int e = tid + l * threads, i = e / quads, q = e % quads;
        xs[l] = float4{0.0f, 0.0f, 0.0f, 0.0f};
        if (e < TM * quads && p0 + i < m) {
            float4 x = reinterpret_cast<const float4*>(a + (long)(p0 + i) * k)[q];
            if (gate) {
                float4 g = reinterpret_cast<const float4*>(gate)[q];
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
    __syncthreads();
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
    __syncthreads();
#pragma unroll
    for (int i = 0; i < TM; ++i) part[(warp * TM + i) * 32 + lane] = acc[i];
    __syncthreads();
    float v = 0.0f;
    if (fin) {
        float sum = dynofa_sum_strided<false>(&part[warp * 32 + lane], TM * 32, blockDim.y);
        v = dynofa_act(sum * es + et, act) + er;
        out[(long)(p0 + warp) * n + o] = v;
    }
    if (!pool) return;
    // The head's pool: this tile's column sums, pixel by pixel in order.
    __syncthreads();
    if (warp < TM) part[warp * 32 + lane] = v;
    __syncthreads();
    if (warp == 0 && o < n) {
        float total = 0.0f;
        for (int i = 0; i < TM; ++i) total += part[i * 32 + lane];
        pool[(long)blockIdx.y * n + o] = total;
    }
}

// Two shapes: PWW_TM pixels with up to PWW_KC weights per lane (few pixels, long k), and PWW16_TM
// pixels with up to PWW16_KC (more pixels per block for larger maps, whose k is short).
#define DYNOFA_POINTWISE_WARPS(name, TM, KC, KMAX)                                                              \
    extern "C" __global__ void __launch_bounds__(32 * PWW_WARPS)                                                \
        name(const float* __restrict__ a, int m, int k, const float* __restrict__ w, int ldw, int n,            \
             const float* __restrict__ scale, const float* __restrict__ shift, int act,                         \
             const float* __restrict__ gate, const float* __restrict__ res, float* __restrict__ out,            \
             float* __restrict__ pool, int kc, float* __restrict__ split, unsigned* __restrict__ tickets) {     \
        constexpr int STAGED = TM * KMAX / 4, PARTS = PWW_WARPS * TM * 8;                                       \
        __shared__ float4 buf[STAGED > PARTS ? STAGED : PARTS];                                                 \
        pointwise_warps<TM, KC, KMAX>(a, m, k, w, ldw, n, scale, shift, act, gate, res, out, pool, kc, buf);   \
    }
DYNOFA_POINTWISE_WARPS(dynofa_pointwise_warps, PWW_TM, PWW_KC, PWW_KC * PWW_WARPS)
DYNOFA_POINTWISE_WARPS(dynofa_pointwise_warps16, PWW16_TM, PWW16_KC, PWW16_KC * PWW_WARPS)

// Depthwise KxK convolution, stride S, padding K/2, + BN + act, NHWC `in` ([size][size][c]) into
// `out` ([osize][osize][c]); taps `w` are `[K*K][ldw]`. Two kernels compute it: dynofa_depthwise
// from global memory, for maps small enough that its tiles must be small to make blocks for every
// multiprocessor, and dynofa_depthwise_region from a shared-memory copy of each block's input, for
// large maps. Both: block (DW_CH, DW_ROWS), x walking channels; a thread keeps its channel's taps
// in registers (loaded before waiting for the previous kernel) and computes runs of consecutive
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
    for (int tap = 0; tap < K * K; ++tap) taps[tap] = ch < c ? w[tap * ldw + ch] : 0.0f;
    s = ch < c ? scale[ch] : 0.0f;
    t = ch < c ? shift[ch] : 0.0f;
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
__device__ __forceinline__ void dw_partial(float sum, float* __restrict__ partial, int c, int ch,
                                           float (*sums)[DW_CH]) {
    sums[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        float total = 0.0f;
        for (int y = 0; y < DW_ROWS; ++y) total += sums[y][threadIdx.x];
        partial[blockIdx.y * c + ch] = total;
    }
}

// From global memory: runs of DW_RUN pixels, y walking the `per_tile` runs of tile blockIdx.y (the
// plan makes tiles small where a map has few pixels, so that there are blocks for every
// multiprocessor).
template <int K, int S>
__device__ __forceinline__ void depthwise_runs(const float* __restrict__ in, int size, int c,
                                               const float* __restrict__ w, int ldw, int osize, int per_tile,
                                               const float* __restrict__ scale, const float* __restrict__ shift,
                                               int act, float* __restrict__ out, float* __restrict__ partial,
                                               float (*sums)[DW_CH]) {
    constexpr int SEG = (DW_RUN - 1) * S + K;
    int ch = blockIdx.x * DW_CH + threadIdx.x;
    int per_row = (osize + DW_RUN - 1) / DW_RUN, runs = osize * per_row;
    int begin = blockIdx.y * per_tile, end = begin + per_tile < runs ? begin + per_tile : runs;
    float sum = 0.0f, taps[K * K], s, t;
    dw_load_taps<K>(w, ldw, scale, shift, ch, c, taps, s, t);
    DYNOFA_WAIT_PREVIOUS();
    if (ch < c) {
        for (int q = begin + threadIdx.y; q < end; q += DW_ROWS) {
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
                    seg[x] = ix >= 0 && ix < size ? row[(long)ix * c] : 0.0f;
                }
                dw_accumulate<K, S, DW_RUN>(seg, &taps[dy * K], acc);
            }
            sum += dw_store<DW_RUN>(acc, s, t, act, out, osize, c, ch, oy, ox0);
        }
    }
    DYNOFA_LAUNCH_DEPENDENTS();
    if (partial) dw_partial(sum, partial, c, ch, sums);
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

// Tile blockIdx.y's first output pixel (row, column); its region starts at (oy0 * S - K / 2,
// ox0 * S - K / 2).
template <int K, int S>
__device__ __forceinline__ void dw_tile_origin(int osize, int& oy0, int& ox0) {
    using G = DwRegion<K, S>;
    int per_row = (osize + G::TW - 1) / G::TW;
    oy0 = blockIdx.y / per_row * DW_ROWS;
    ox0 = blockIdx.y % per_row * G::TW;
}

// The second half of the region kernels: thread row y computes output row y of tile blockIdx.y from
// `region` (filled, behind a barrier), then stores it and the SE sums.
template <int K, int S>
__device__ __forceinline__ void dw_from_region(const float* __restrict__ region, const float (&taps)[K * K], float s,
                                               float t, int act, float* __restrict__ out, int osize, int c,
                                               float* __restrict__ partial, float (*sums)[DW_CH]) {
    using G = DwRegion<K, S>;
    int lane = threadIdx.x, ty = threadIdx.y, ch = blockIdx.x * DW_CH + lane;
    int oy0, ox0;
    dw_tile_origin<K, S>(osize, oy0, ox0);
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
    if (partial) dw_partial(sum, partial, c, ch, sums);
}

template <int K, int S>
__device__ __forceinline__ void depthwise_region(const float* __restrict__ in, int size, int c,
                                                 const float* __restrict__ w, int ldw, int osize,
                                                 const float* __restrict__ scale, const float* __restrict__ shift,
                                                 int act, float* __restrict__ out, float* __restrict__ partial,
                                                 float* __restrict__ region, float (*sums)[DW_CH]) {
    using G = DwRegion<K, S>;
    constexpr int PIXELS = G::PIXELS, LOADS = G::LOADS, RW = G::RW;
    int lane = threadIdx.x, ty = threadIdx.y, ch = blockIdx.x * DW_CH + lane;
    int oy0, ox0;
    dw_tile_origin<K, S>(osize, oy0, ox0);
    int iy0 = oy0 * S - K / 2, ix0 = ox0 * S - K / 2;
    float taps[K * K], s, t;
    dw_load_taps<K>(w, ldw, scale, shift, ch, c, taps, s, t);
    DYNOFA_WAIT_PREVIOUS();
    float v[LOADS];
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int px = ty + l * DW_ROWS, iy = iy0 + px / RW, ix = ix0 + px % RW;
        bool inside = px < PIXELS && ch < c && iy >= 0 && iy < size && ix >= 0 && ix < size;
        v[l] = inside ? in[((long)iy * size + ix) * c + ch] : 0.0f;
    }
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int px = ty + l * DW_ROWS;
        if (px < PIXELS) region[px * DW_CH + lane] = v[l];
    }
    __syncthreads();
    dw_from_region<K, S>(region, taps, s, t, act, out, osize, c, partial, sums);
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
template <int K, int S>
__device__ __forceinline__ void expand_depthwise(const float* __restrict__ x, int size, int in,
                                                 const float* __restrict__ we, int ldwe,
                                                 const float* __restrict__ escale, const float* __restrict__ eshift,
                                                 int eact, int c, const float* __restrict__ w, int ldw, int osize,
                                                 const float* __restrict__ scale, const float* __restrict__ shift,
                                                 int act, float* __restrict__ out, float* __restrict__ partial,
                                                 float* __restrict__ buf, float (*sums)[DW_CH]) {
    using G = DwRegion<K, S>;
    constexpr int PIXELS = G::PIXELS, LOADS = G::LOADS, RW = G::RW, THREADS = DW_CH * DW_ROWS;
    constexpr int WLOADS = (EDW_MAX_IN * DW_CH + THREADS - 1) / THREADS, XLOADS = (EDW_FLOATS / 4 + THREADS - 1) / THREADS;
    int lane = threadIdx.x, ty = threadIdx.y, tid = ty * DW_CH + lane, ch = blockIdx.x * DW_CH + lane;
    int oy0, ox0;
    dw_tile_origin<K, S>(osize, oy0, ox0);
    int iy0 = oy0 * S - K / 2, ix0 = ox0 * S - K / 2;
    // buf: weights [in][DW_CH], then the region's input [PIXELS][in].
    float* ws = buf;
    float4* xs = reinterpret_cast<float4*>(buf + in * DW_CH);
    {
        float v[WLOADS];
#pragma unroll
        for (int l = 0; l < WLOADS; ++l) {
            int e = tid + l * THREADS, i = e / DW_CH, o = blockIdx.x * DW_CH + e % DW_CH;
            v[l] = i < in && o < c ? we[(long)i * ldwe + o] : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < WLOADS; ++l)
            if (tid + l * THREADS < in * DW_CH) ws[tid + l * THREADS] = v[l];
    }
    float es = ch < c ? escale[ch] : 0.0f, et = ch < c ? eshift[ch] : 0.0f;
    float taps[K * K], s, t;
    dw_load_taps<K>(w, ldw, scale, shift, ch, c, taps, s, t);
    DYNOFA_WAIT_PREVIOUS();
    int quads = in / 4, total = PIXELS * quads;
    {
        float4 v[XLOADS];
#pragma unroll
        for (int l = 0; l < XLOADS; ++l) {
            int e = tid + l * THREADS, px = e / quads, iy = iy0 + px / RW, ix = ix0 + px % RW;
            bool inside = e < total && iy >= 0 && iy < size && ix >= 0 && ix < size;
            v[l] = inside ? reinterpret_cast<const float4*>(x + ((long)iy * size + ix) * in)[e % quads]
                          : float4{0.0f, 0.0f, 0.0f, 0.0f};
        }
#pragma unroll
        for (int l = 0; l < XLOADS; ++l)
            if (tid + l * THREADS < total) xs[tid + l * THREADS] = v[l];
    }
    __syncthreads();
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
    __syncthreads();
    // The expanded region replaces the weights and inputs: [PIXELS][DW_CH] as the region kernel's.
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
        int px = ty + l * DW_ROWS, iy = iy0 + px / RW, ix = ix0 + px % RW;
        bool inside = ch < c && iy >= 0 && iy < size && ix >= 0 && ix < size;
        if (px < PIXELS) buf[px * DW_CH + lane] = inside ? dynofa_act(acc[l] * es + et, eact) : 0.0f;
    }
    __syncthreads();
    dw_from_region<K, S>(buf, taps, s, t, act, out, osize, c, partial, sums);
}

// `return F<K, S>(args...)` for the kernel's k and stride: the plan passes k = 3, 5 or 7 and
// stride 1 or 2 only.
#define DYNOFA_DW_CASE(K, S, F, ...) \
    if (k == K && stride == S) return F<K, S>(__VA_ARGS__);
#define DYNOFA_DW_DISPATCH(F, ...)                                                                  \
    DYNOFA_DW_CASE(3, 1, F, __VA_ARGS__) DYNOFA_DW_CASE(3, 2, F, __VA_ARGS__)                       \
    DYNOFA_DW_CASE(5, 1, F, __VA_ARGS__) DYNOFA_DW_CASE(5, 2, F, __VA_ARGS__)                       \
    DYNOFA_DW_CASE(7, 1, F, __VA_ARGS__) DYNOFA_DW_CASE(7, 2, F, __VA_ARGS__)

extern "C" __global__ void dynofa_depthwise(const float* __restrict__ in, int size, int c,
                                            const float* __restrict__ w, int ldw, int k, int stride, int osize,
                                            int per_tile, const float* __restrict__ scale,
                                            const float* __restrict__ shift, int act, float* __restrict__ out,
                                            float* __restrict__ partial) {
    __shared__ float sums[DW_ROWS][DW_CH];
    DYNOFA_DW_DISPATCH(depthwise_runs, in, size, c, w, ldw, osize, per_tile, scale, shift, act, out, partial, sums)
}

// The same arguments as dynofa_depthwise; `per_tile` is unused (a tile is fixed by the stride).
extern "C" __global__ void dynofa_depthwise_region(const float* __restrict__ in, int size, int c,
                                                   const float* __restrict__ w, int ldw, int k, int stride,
                                                   int osize, int per_tile, const float* __restrict__ scale,
                                                   const float* __restrict__ shift, int act, float* __restrict__ out,
                                                   float* __restrict__ partial) {
    // One array for every instantiation (each would otherwise reserve its own).
    __shared__ float region[DWR_PIXELS * DW_CH];
    __shared__ float sums[DW_ROWS][DW_CH];
    DYNOFA_DW_DISPATCH(depthwise_region, in, size, c, w, ldw, osize, scale, shift, act, out, partial, region, sums)
}

// Arguments: the expansion's (input, size, in, weights, ldwe, BN, act), then dynofa_depthwise's
// less its input and `per_tile`. Two blocks per multiprocessor at least: uncapped, ptxas took 148
// registers (the 7x7 taps, the region's sums and the staged inputs), room for one.
extern "C" __global__ void __launch_bounds__(DW_CH * DW_ROWS, 2)
    dynofa_expand_depthwise(const float* __restrict__ x, int size, int in, const float* __restrict__ we, int ldwe,
                            const float* __restrict__ escale, const float* __restrict__ eshift, int eact, int c,
                            const float* __restrict__ w, int ldw, int k, int stride, int osize,
                            const float* __restrict__ scale, const float* __restrict__ shift, int act,
                            float* __restrict__ out, float* __restrict__ partial) {
    __shared__ float4 buf4[EDW_FLOATS / 4];
    __shared__ float sums[DW_ROWS][DW_CH];
    float* buf = reinterpret_cast<float*>(buf4);
    DYNOFA_DW_DISPATCH(expand_depthwise, x, size, in, we, ldwe, escale, eshift, eact, c, w, ldw, osize, scale, shift,
                       act, out, partial, buf, sums)
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
extern "C" __global__ void __launch_bounds__(MV_THREADS, 2)
    dynofa_matvec(const float* __restrict__ parts, int nparts, int ldp, float xscale, const float* __restrict__ w,
                  int ldw, int rows, int cols, const float* __restrict__ bias, int act, float* __restrict__ out) {
    __shared__ float x[MV_MAX_COLS];
    __shared__ float red[MV_THREADS];
    int tid = threadIdx.x;
    int lane = tid % MV_LANES, row = blockIdx.x * MV_ROWS + tid / MV_LANES;
    const float* wr = w + (long)(row < rows ? row : 0) * ldw;
    float pre[MV_PRE];
#pragma unroll
    for (int u = 0; u < MV_PRE; ++u) {
        int i = lane + u * MV_LANES;
        pre[u] = row < rows && i < cols ? wr[i] : 0.0f;
    }
    float b = bias && row < rows ? bias[row] : 0.0f;
    DYNOFA_WAIT_PREVIOUS();
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
                    v[j][u] = i < cols && t0 + u < nparts ? parts[(long)(t0 + u) * ldp + i] : 0.0f;
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
    __syncthreads();
    float acc = 0.0f;
#pragma unroll
    for (int u = 0; u < MV_PRE; ++u) {
        int i = lane + u * MV_LANES;
        if (i < cols) acc += x[i] * pre[u];
    }
    DYNOFA_LAUNCH_DEPENDENTS();
    red[tid] = acc;
    __syncthreads();
    if (lane == 0 && row < rows) {
        float v = b;
        for (int l = 0; l < MV_LANES; ++l) v += red[tid + l];
        out[row] = dynofa_act(v, act);
    }
}

// Measurement only (GpuEngine::grid_barrier; gpu::GRID_BARRIER), not part of any plan: `rounds`
// barriers across the whole grid, which a cooperative launch keeps resident. Thread 0 of a block
// arrives by adding 1 to count[0] (zero at launch) and waits until every block has arrived for the
// round: what a persistent kernel running every layer would pay between two layers instead of a
// graph node. The wait is bounded: should the blocks not all be resident after all, a block sets
// count[1] and every block returns, rather than spin forever.
extern "C" __global__ void dynofa_grid_barrier(unsigned* count, int rounds) {
    volatile unsigned* arrived = count;
    volatile unsigned* gave_up = count + 1;
    for (int r = 1; r <= rounds; ++r) {
        __syncthreads();
        if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(count, 1u);
            unsigned target = (unsigned)r * gridDim.x;
            for (unsigned spins = 0; *arrived < target && !*gave_up; ++spins)
                if (spins == (1u << 20)) *gave_up = 1u;
            __threadfence();
        }
        __syncthreads();
        if (*gave_up) return;
    }
}
