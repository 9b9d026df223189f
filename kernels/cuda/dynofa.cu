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
// it uses only: blockIdx/threadIdx/blockDim, __shared__ arrays, __syncthreads (reached by every
// thread of a block), fminf/fmaxf. No warp shuffles, no atomics: results are deterministic.

// The tile sizes (PW_*, DW_*, MV_*) are defined by the launch plan (dynofa-kernels' gpu module), which
// prepends them to this source, so the plan and the kernels cannot disagree.
#if !defined(PW_BM) || !defined(DW_PIX) || !defined(MV_ROWS)
#error "compile this source through dynofa_kernels::gpu::source(), which defines the tile sizes"
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
// `gate` (the SE excitation of the projection's input) and `res` may be null. Tiles of
// PW_BM pixels x PW_BN channels, PW_BK input channels at a time, PW_TM x PW_TN per thread.
extern "C" __global__ void dynofa_pointwise(const float* __restrict__ a, int m, int k, const float* __restrict__ w,
                                            int ldw, int n, const float* __restrict__ scale,
                                            const float* __restrict__ shift, int act,
                                            const float* __restrict__ gate, const float* __restrict__ res,
                                            float* __restrict__ out) {
    __shared__ float as[PW_BK][PW_BM];
    __shared__ float bs[PW_BK][PW_BN];
    int tid = threadIdx.x;
    int tx = tid % (PW_BN / PW_TN), ty = tid / (PW_BN / PW_TN);
    int m0 = blockIdx.y * PW_BM, n0 = blockIdx.x * PW_BN;
    float acc[PW_TM][PW_TN];
    for (int i = 0; i < PW_TM; ++i)
        for (int j = 0; j < PW_TN; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < k; k0 += PW_BK) {
        // Consecutive threads read consecutive input channels of a pixel (a) or output channels (w).
        for (int e = tid; e < PW_BM * PW_BK; e += PW_THREADS) {
            int row = e / PW_BK, kk = e % PW_BK;
            int p = m0 + row, i = k0 + kk;
            float v = 0.0f;
            if (p < m && i < k) {
                v = a[(long)p * k + i];
                if (gate) v *= gate[i];
            }
            as[kk][row] = v;
        }
        for (int e = tid; e < PW_BK * PW_BN; e += PW_THREADS) {
            int kk = e / PW_BN, col = e % PW_BN;
            int i = k0 + kk, o = n0 + col;
            bs[kk][col] = (i < k && o < n) ? w[(long)i * ldw + o] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < PW_BK; ++kk) {
            float av[PW_TM], bv[PW_TN];
            for (int i = 0; i < PW_TM; ++i) av[i] = as[kk][ty * PW_TM + i];
            for (int j = 0; j < PW_TN; ++j) bv[j] = bs[kk][tx + j * (PW_BN / PW_TN)];
            for (int i = 0; i < PW_TM; ++i)
                for (int j = 0; j < PW_TN; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }

    // Columns are strided by the thread count along n so that a warp stores contiguous channels.
    for (int j = 0; j < PW_TN; ++j) {
        int o = n0 + tx + j * (PW_BN / PW_TN);
        if (o >= n) continue;
        float s = scale[o], t = shift[o];
        for (int i = 0; i < PW_TM; ++i) {
            int p = m0 + ty * PW_TM + i;
            if (p >= m) continue;
            float v = dynofa_act(acc[i][j] * s + t, act);
            if (res) v += res[(long)p * n + o];
            out[(long)p * n + o] = v;
        }
    }
}

// Depthwise kxk convolution, stride `stride`, padding k/2, + BN + act, NHWC `in` ([size][size][c])
// into `out` ([osize][osize][c]); taps `w` are `[k*k][ldw]`. Block (DW_CH, DW_ROWS): x walks channels,
// y walks the DW_PIX pixels of tile blockIdx.y. With `partial` non-null, each block also writes its
// tile's per-channel sums of the output to partial[blockIdx.y][c] (the SE squeeze, finished in
// dynofa_matvec).
extern "C" __global__ void dynofa_depthwise(const float* __restrict__ in, int size, int c,
                                            const float* __restrict__ w, int ldw, int k, int stride, int osize,
                                            const float* __restrict__ scale, const float* __restrict__ shift,
                                            int act, float* __restrict__ out, float* __restrict__ partial) {
    __shared__ float sums[DW_ROWS][DW_CH];
    int ch = blockIdx.x * DW_CH + threadIdx.x;
    int pad = k / 2, pixels = osize * osize;
    int end = (blockIdx.y + 1) * DW_PIX;
    if (end > pixels) end = pixels;
    float sum = 0.0f;
    if (ch < c) {
        float s = scale[ch], t = shift[ch];
        for (int p = blockIdx.y * DW_PIX + threadIdx.y; p < end; p += DW_ROWS) {
            int oy = p / osize, ox = p % osize;
            float acc = 0.0f;
            for (int dy = 0; dy < k; ++dy) {
                int iy = oy * stride + dy - pad;
                if (iy < 0 || iy >= size) continue;
                for (int dx = 0; dx < k; ++dx) {
                    int ix = ox * stride + dx - pad;
                    if (ix < 0 || ix >= size) continue;
                    acc += in[((long)iy * size + ix) * c + ch] * w[(dy * k + dx) * ldw + ch];
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

// A fully connected layer: out[o] = act(sum_i x[i] * w[o * ldw + i] + bias[o]) for o < rows, i < cols,
// where x[i] = xscale * sum_t parts[t * ldp + i] over t < nparts (nparts = 1, xscale = 1: a plain
// vector; else a mean over pixels or over depthwise tiles, the pooling fused here). One warp-sized
// group of MV_LANES threads per row; `bias` may be null.
extern "C" __global__ void dynofa_matvec(const float* __restrict__ parts, int nparts, int ldp, float xscale,
                                         const float* __restrict__ w, int ldw, int rows, int cols,
                                         const float* __restrict__ bias, int act, float* __restrict__ out) {
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
