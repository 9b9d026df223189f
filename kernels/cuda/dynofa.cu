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
// every thread of a block), fminf/fmaxf, for split GEMMs atomicAdd on a ticket counter,
// __threadfence and __ldcg, and on sm_90 the griddepcontrol instructions (DYNOFA_AFTER_PREVIOUS).
// No warp shuffles, and no sum depends on the order in which blocks run: results are deterministic.

// The tile sizes (PW_*, PWS_*, DW_*, MV_*) are defined by the launch plan (dynofa-kernels' gpu module), which
// prepends them to this source, so the plan and the kernels cannot disagree.
#if !defined(PW_BM) || !defined(DW_ROWS) || !defined(MV_ROWS)
#error "compile this source through dynofa_kernels::gpu::source(), which defines the tile sizes"
#endif

// Programmatic dependent launch (sm_90 and newer, when the engine launches with it): a kernel's
// blocks may be scheduled while the kernel before it finishes. Every kernel first waits for the
// previous one's results (and memory), then lets the next one be scheduled. Without such a launch,
// on older GPUs and in the host emulation this is nothing.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define DYNOFA_AFTER_PREVIOUS() asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;" ::: "memory")
#else
#define DYNOFA_AFTER_PREVIOUS()
#endif

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
// NHWC `out` ([o][o][c]). One thread per output value; `w` is `[27][ldw]` with rows ci*9 + dy*3 + dx.
extern "C" __global__ void dynofa_stem(const float* __restrict__ in, int r, int o, const float* __restrict__ w,
                                       int ldw, int c, const float* __restrict__ scale,
                                       const float* __restrict__ shift, float* __restrict__ out) {
    DYNOFA_AFTER_PREVIOUS();
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= o * o * c) return;
    int ch = idx % c, p = idx / c;
    int oy = p / o, ox = p % o;
    float acc = 0.0f;
    for (int t = 0; t < 27; ++t) {
        int ci = t / 9, dy = t / 3 % 3, dx = t % 3;
        int iy = 2 * oy + dy - 1, ix = 2 * ox + dx - 1;
        if (iy >= 0 && iy < r && ix >= 0 && ix < r) acc += in[(ci * r + iy) * r + ix] * w[t * ldw + ch];
    }
    out[idx] = dynofa_act(acc * scale[ch] + shift[ch], ACT_HSWISH);
}

// A 1x1 convolution as a GEMM: out[p][o] = act(bn(sum_i a[p][i] * gate[i] * w[i][o])) + res[p][o]
// for p < m, o < n, i < k; `a`, `out` and `res` are dense ([m][k], [m][n]), `w` is `[k][ldw]`.
// `gate` (the SE excitation of the projection's input) and `res` may be null. Tiles of BM pixels x
// BN channels, PW_BK input channels at a time, TM x TN per thread.
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
                                               const float* __restrict__ res, float* __restrict__ out, int kc,
                                               float* __restrict__ split, unsigned* __restrict__ tickets) {
    constexpr int COLS = BN / TN, THREADS = (BM / TM) * COLS;
    __shared__ float as[PW_BK][BM];
    __shared__ float bs[PW_BK][BN];
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

    for (int k0 = kbeg; k0 < kend; k0 += PW_BK) {
        // Consecutive threads read consecutive input channels of a pixel (a) or output channels (w).
        for (int e = tid; e < BM * PW_BK; e += THREADS) {
            int row = e / PW_BK, kk = e % PW_BK;
            int p = m0 + row, i = k0 + kk;
            float v = 0.0f;
            if (p < m && i < kend) {
                v = a[(long)p * k + i];
                if (gate) v *= gate[i];
            }
            as[kk][row] = v;
        }
        for (int e = tid; e < PW_BK * BN; e += THREADS) {
            int kk = e / BN, col = e % BN;
            int i = k0 + kk, o = n0 + col;
            bs[kk][col] = (i < kend && o < n) ? w[(long)i * ldw + o] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < PW_BK; ++kk) {
            float av[TM], bv[TN];
            #pragma unroll
            for (int i = 0; i < TM; ++i) av[i] = as[kk][ty * TM + i];
            #pragma unroll
            for (int j = 0; j < TN; ++j) bv[j] = bs[kk][tx + j * COLS];
            #pragma unroll
            for (int i = 0; i < TM; ++i)
                #pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }

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
                float v = 0.0f;
                // Through L2: the other slices were written by other multiprocessors.
                if (o < n && p < m)
                    for (unsigned z = 0; z < gridDim.z; ++z) v += __ldcg(&split[z * slice + (long)p * n + o]);
                acc[i][j] = v;
            }
    }

    // Columns are strided by the thread count along n so that a warp stores contiguous channels.
    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        int o = n0 + tx + j * COLS;
        if (o >= n) continue;
        float s = scale[o], t = shift[o];
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            int p = m0 + ty * TM + i;
            if (p >= m) continue;
            float v = dynofa_act(acc[i][j] * s + t, act);
            if (res) v += res[(long)p * n + o];
            out[(long)p * n + o] = v;
        }
    }
}

#define DYNOFA_POINTWISE(name, BM, BN, TM, TN)                                                              \
    extern "C" __global__ void name(const float* __restrict__ a, int m, int k, const float* __restrict__ w,  \
                                    int ldw, int n, const float* __restrict__ scale,                        \
                                    const float* __restrict__ shift, int act, const float* __restrict__ gate, \
                                    const float* __restrict__ res, float* __restrict__ out, int kc,         \
                                    float* __restrict__ split, unsigned* __restrict__ tickets) {            \
        DYNOFA_AFTER_PREVIOUS();                                                                            \
        pointwise_tile<BM, BN, TM, TN>(a, m, k, w, ldw, n, scale, shift, act, gate, res, out, kc, split,    \
                                       tickets);                                                            \
    }
// Large tiles for layers with many pixels; small ones (more blocks, usually with k split) for the rest.
DYNOFA_POINTWISE(dynofa_pointwise, PW_BM, PW_BN, PW_TM, PW_TN)
DYNOFA_POINTWISE(dynofa_pointwise_small, PWS_BM, PWS_BN, PWS_TM, PWS_TN)

// Depthwise KxK convolution, stride `stride`, padding K/2, + BN + act, NHWC `in` ([size][size][c])
// into `out` ([osize][osize][c]); taps `w` are `[K*K][ldw]`. Block (DW_CH, DW_ROWS): x walks
// channels, y walks the `pix` pixels of tile blockIdx.y (the plan makes tiles small where a map
// has few pixels, so that there are blocks for every multiprocessor). A thread keeps its channel's
// taps in registers. With `partial` non-null, each block also writes its tile's per-channel sums
// of the output to partial[blockIdx.y][c] (the SE squeeze, finished in dynofa_matvec).
template <int K>
__device__ __forceinline__ void depthwise_taps(const float* __restrict__ in, int size, int c,
                                               const float* __restrict__ w, int ldw, int stride, int osize,
                                               int pix, const float* __restrict__ scale,
                                               const float* __restrict__ shift, int act, float* __restrict__ out,
                                               float* __restrict__ partial, float (*sums)[DW_CH]) {
    int ch = blockIdx.x * DW_CH + threadIdx.x;
    int pixels = osize * osize, begin = blockIdx.y * pix;
    int end = begin + pix < pixels ? begin + pix : pixels;
    float sum = 0.0f;
    if (ch < c) {
        float taps[K * K];
#pragma unroll
        for (int t = 0; t < K * K; ++t) taps[t] = w[t * ldw + ch];
        float s = scale[ch], t = shift[ch];
        for (int p = begin + threadIdx.y; p < end; p += DW_ROWS) {
            int oy = p / osize, ox = p % osize;
            float acc = 0.0f;
#pragma unroll
            for (int dy = 0; dy < K; ++dy) {
                int iy = oy * stride + dy - K / 2;
                if (iy < 0 || iy >= size) continue;
#pragma unroll
                for (int dx = 0; dx < K; ++dx) {
                    int ix = ox * stride + dx - K / 2;
                    if (ix < 0 || ix >= size) continue;
                    acc += in[((long)iy * size + ix) * c + ch] * taps[dy * K + dx];
                }
            }
            float v = dynofa_act(acc * s + t, act);
            out[(long)p * c + ch] = v;
            sum += v;
        }
    }
    if (!partial) return;
    sums[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        float total = 0.0f;
        for (int y = 0; y < DW_ROWS; ++y) total += sums[y][threadIdx.x];
        partial[blockIdx.y * c + ch] = total;
    }
}

extern "C" __global__ void dynofa_depthwise(const float* __restrict__ in, int size, int c,
                                            const float* __restrict__ w, int ldw, int k, int stride, int osize,
                                            int pix, const float* __restrict__ scale,
                                            const float* __restrict__ shift, int act, float* __restrict__ out,
                                            float* __restrict__ partial) {
    DYNOFA_AFTER_PREVIOUS();
    __shared__ float sums[DW_ROWS][DW_CH];
    // The plan passes k = 3, 5 or 7 only.
    if (k == 3)
        depthwise_taps<3>(in, size, c, w, ldw, stride, osize, pix, scale, shift, act, out, partial, sums);
    else if (k == 5)
        depthwise_taps<5>(in, size, c, w, ldw, stride, osize, pix, scale, shift, act, out, partial, sums);
    else
        depthwise_taps<7>(in, size, c, w, ldw, stride, osize, pix, scale, shift, act, out, partial, sums);
}

// A fully connected layer: out[o] = act(sum_i x[i] * w[o * ldw + i] + bias[o]) for o < rows, i < cols,
// where x[i] = xscale * sum_t parts[t * ldp + i] over t < nparts (nparts = 1, xscale = 1: a plain
// vector; else a mean over pixels or over depthwise tiles, the pooling fused here). One warp-sized
// group of MV_LANES threads per row; `bias` may be null.
extern "C" __global__ void dynofa_matvec(const float* __restrict__ parts, int nparts, int ldp, float xscale,
                                         const float* __restrict__ w, int ldw, int rows, int cols,
                                         const float* __restrict__ bias, int act, float* __restrict__ out) {
    DYNOFA_AFTER_PREVIOUS();
    __shared__ float x[MV_MAX_COLS];
    __shared__ float red[MV_THREADS];
    int tid = threadIdx.x;
    for (int i = tid; i < cols; i += MV_THREADS) {
        float s = 0.0f;
        for (int t = 0; t < nparts; ++t) s += parts[(long)t * ldp + i];
        x[i] = s * xscale;
    }
    __syncthreads();
    int lane = tid % MV_LANES, row = blockIdx.x * MV_ROWS + tid / MV_LANES;
    float acc = 0.0f;
    if (row < rows)
        for (int i = lane; i < cols; i += MV_LANES) acc += x[i] * w[(long)row * ldw + i];
    red[tid] = acc;
    __syncthreads();
    if (lane == 0 && row < rows) {
        float v = bias ? bias[row] : 0.0f;
        for (int l = 0; l < MV_LANES; ++l) v += red[tid + l];
        out[row] = dynofa_act(v, act);
    }
}
