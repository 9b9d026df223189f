// Host emulation of the subset of CUDA that dynofa.cu uses, so that g++ compiles the very kernels that
// NVRTC compiles and the launch plan can be checked on a machine without a GPU (kernels/tests/
// gpu_emulated.rs). Slow, single-threaded and exact about what matters for correctness:
//
// - every thread of a block runs as a fiber (ucontext) with its own stack and registers;
// - __syncthreads switches to the next fiber; a barrier opens only after all of the block's threads
//   reached it (sync_named(id, n), dyn_sync's named barrier: n of them), so a read after a barrier
//   sees every write before it;
// - __shared__ is a static array (one block runs at a time), blockIdx/threadIdx/... are globals set by
//   the scheduler before a fiber resumes;
// - a barrier that only some threads reach (undefined on a GPU) fails the launch;
// - a warp's tensor-core product (dyn_mma) waits for all 32 lanes, as mma.sync does, and reads its
//   operands as the tensor cores read tf32 (mma_tf32);
// - blocks run in grid order, or last block first after dynofa_emu_reverse(1); the threads of a
//   block run in order between barriers, or last thread first after dynofa_emu_reverse(2) (3: both).
//   A test runs each to check that no result depends on the order: a read of shared memory that
//   misses its barrier sees another value in one of the two thread orders;
// - a load of what no launch writes (ld_w) outside the ranges that dynofa_emu_read_only named (the
//   weights and BN), or of what an earlier launch wrote (ld_act) before the thread's wait for the
//   previous launch (dyn_wait), says so and fails the launch: on a GPU, either may read what the
//   launch before is still writing (an ld_w may be issued before the wait);
// - dynofa_persistent, a cooperative launch, runs its blocks together (each with its own
//   DYN_BLOCK_SHARED and DYN_DYNAMIC_SHARED memory): a poll (DYN_SPIN_PAUSE) lets the other fibers
//   run, and a launch in which no fiber can go on fails, as one that would hang a GPU.
//
// A translation unit includes this header, then the kernel source (dynofa_kernels::gpu::source()),
// then writes DYNOFA_EMU_ENTRY, which defines the C entry points dynofa_emu_launch,
// dynofa_emu_reverse and dynofa_emu_read_only.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include <ucontext.h>

struct dim3 {
    unsigned x, y, z;
};

// CUDA's vector types (16- and 8-byte aligned there; the kernels' accesses are aligned on the GPU
// and need not be here).
struct float4 {
    float x, y, z, w;
};
struct float2 {
    float x, y;
};

static dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// CUDA's reinterpretations of a float's bits (the emulation's mma reads its operands with them too).
static inline float __uint_as_float(unsigned v) {
    float f;
    std::memcpy(&f, &v, sizeof f);
    return f;
}
static inline unsigned __float_as_uint(float f) {
    unsigned v;
    std::memcpy(&v, &f, sizeof v);
    return v;
}

namespace dynofa_emu {

// Enough for the kernels' register tiles; the scheduler's frames are on the caller's stack.
constexpr std::size_t STACK = 64 * 1024;

// What a fiber waits for when it is not running: nothing (it runs next round), barrier `id` of
// `count` threads of its block, its warp's mma (dyn_mma: every lane of the warp), or a condition it
// polls (DYN_SPIN_PAUSE: it runs next round too).
enum class Wait { Run, Barrier, Warp, Spin, Done };

struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    dim3 tid, block;
    std::size_t slot;  // its block's place among the blocks running together
    Wait wait;
    unsigned id, count;
    bool waited;  // past dyn_wait in the current launch block
    unsigned mmas;  // the mma.sync calls it made (mma_tf32: which of its warp's two scratches)
};

static std::vector<Fiber> fibers;
static ucontext_t scheduler;
static std::size_t current;
static std::function<void()> body;
static bool reverse, reverse_threads;
// The launch's dynamic shared memory per block (bytes).
static std::size_t dynamic_shared;
// The kernel that runs, and the memory that no launch writes: [begin, end) ranges.
static const char* kernel;
static std::vector<std::pair<const char*, const char*>> read_only;
// A load broke its rule in this launch (reads, below).
static bool misread;
// Barrier ids: __syncthreads' 0 and bar.sync's 1 to 15.
constexpr unsigned BARRIERS = 16;

static void trampoline() {
    body();
    fibers[current].wait = Wait::Done;
    // Returning resumes `scheduler` through uc_link.
}

// Runs `blocks` blocks of `threads` threads together (fiber b * threads + t is thread t of block
// b); false when a barrier can never be passed: reached by only some of its threads (undefined on
// a GPU), or every fiber waiting on another. A round resumes every fiber that can run until its
// next barrier or poll; then each barrier that all its threads reached opens.
static bool run_blocks(std::size_t blocks, std::size_t threads) {
    std::size_t n = blocks * threads;
    for (std::size_t f = 0; f < n; ++f) {
        Fiber& fiber = fibers[f];
        getcontext(&fiber.ctx);
        fiber.ctx.uc_stack.ss_sp = fiber.stack.data();
        fiber.ctx.uc_stack.ss_size = fiber.stack.size();
        fiber.ctx.uc_link = &scheduler;
        fiber.wait = Wait::Run;
        fiber.waited = false;
        fiber.mmas = 0;
        makecontext(&fiber.ctx, trampoline, 0);
    }
    for (;;) {
        bool progress = false, live = false;
        for (std::size_t i = 0; i < n; ++i) {
            std::size_t b = i / threads, t = i % threads;
            std::size_t f = (reverse ? blocks - 1 - b : b) * threads + (reverse_threads ? threads - 1 - t : t);
            Fiber& fiber = fibers[f];
            if (fiber.wait != Wait::Run && fiber.wait != Wait::Spin) continue;
            bool spinning = fiber.wait == Wait::Spin;
            current = f;
            threadIdx = fiber.tid;
            blockIdx = fiber.block;
            swapcontext(&scheduler, &fiber.ctx);
            progress |= !(spinning && fiber.wait == Wait::Spin);
        }
        for (std::size_t b = 0; b < blocks; ++b) {
            // Each barrier's arrivals in the block, and the count that opens it.
            std::size_t at[BARRIERS] = {}, count[BARRIERS] = {};
            for (std::size_t t = 0; t < threads; ++t) {
                const Fiber& fiber = fibers[b * threads + t];
                if (fiber.wait != Wait::Barrier) continue;
                ++at[fiber.id];
                count[fiber.id] = fiber.count;
            }
            for (std::size_t t = 0; t < threads; ++t) {
                Fiber& fiber = fibers[b * threads + t];
                if (fiber.wait == Wait::Barrier && at[fiber.id] == count[fiber.id]) {
                    fiber.wait = Wait::Run;
                    progress = true;
                }
            }
            // A warp's mma goes on once all of its lanes are in it.
            for (std::size_t w = 0; w < threads; w += 32) {
                std::size_t end = w + 32 < threads ? w + 32 : threads, in = 0;
                for (std::size_t t = w; t < end; ++t) in += fibers[b * threads + t].wait == Wait::Warp;
                if (in != end - w) continue;
                for (std::size_t t = w; t < end; ++t) fibers[b * threads + t].wait = Wait::Run;
                progress = true;
            }
        }
        for (std::size_t f = 0; f < n; ++f) live |= fibers[f].wait != Wait::Done;
        if (!live) return true;
        if (!progress) return false;
    }
}

template <class... A, std::size_t... I>
static void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<A*>(args[I])...);
}

// Launches `kernel` with cuLaunchKernel's argument convention (an array of pointers to the values)
// and `shared` bytes of dynamic shared memory: one block after another, or with `together` every
// block at once (a cooperative launch, whose blocks wait for each other; its shared memory is
// DYN_BLOCK_SHARED and DYN_DYNAMIC_SHARED, one per block).
template <class... A>
static int launch(void (*kernel)(A...), dim3 grid, dim3 block, std::size_t shared, void** args, bool together) {
    std::size_t threads = std::size_t(block.x) * block.y * block.z;
    if (threads == 0 || threads > 1024) return -3;
    std::size_t blocks = std::size_t(grid.x) * grid.y * grid.z, group = together ? blocks : 1;
    if (fibers.size() < group * threads) fibers.resize(group * threads);
    for (std::size_t f = 0; f < group * threads; ++f) {
        if (fibers[f].stack.size() != STACK) fibers[f].stack.resize(STACK);
        std::size_t t = f % threads;
        fibers[f].tid = dim3{unsigned(t % block.x), unsigned(t / block.x % block.y), unsigned(t / (block.x * block.y))};
        fibers[f].slot = f / threads;
    }
    gridDim = grid;
    blockDim = block;
    dynamic_shared = shared;
    misread = false;
    body = [&] { call(kernel, args, std::index_sequence_for<A...>{}); };
    auto index = [&](std::size_t b) {
        return dim3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (std::size_t(grid.x) * grid.y))};
    };
    for (std::size_t i = 0; i < blocks; i += group) {
        for (std::size_t g = 0; g < group; ++g) {
            std::size_t b = group > 1 ? i + g : reverse ? blocks - 1 - i : i;
            for (std::size_t t = 0; t < threads; ++t) fibers[g * threads + t].block = index(b);
        }
        if (!run_blocks(group, threads)) return -2;
    }
    return misread ? -4 : 0;
}

// Yield to the scheduler until the fiber may go on.
static inline void yield(Wait wait, unsigned id, unsigned count) {
    Fiber& fiber = fibers[current];
    fiber.wait = wait;
    fiber.id = id;
    fiber.count = count;
    swapcontext(&fiber.ctx, &scheduler);
}

// A clock: one tick per read (dyn_now), so that reads in one order give times in that order.
static inline unsigned long long now() {
    static unsigned long long ticks;
    return ++ticks;
}

// Named barrier `id` (1 to 15) of `n` threads of a block (dyn_sync in dynofa_persistent).
static inline void sync_named(unsigned id, unsigned n) {
    if (id == 0 || id >= BARRIERS) std::abort();
    yield(Wait::Barrier, id, n);
}

// mma.sync.m16n8k8 .tf32 (dyn_mma's fragments): the lanes' fragments meet in their warp's scratch,
// then each lane takes its outputs. The tensor cores read an operand's tf32 bits only (the low 13
// are ignored: a missing conversion shows as an error, as on a GPU) and add in fp32. Two scratches
// a warp, a call's and the next's: a lane that has taken its outputs writes the next call's while
// the others still read this one's, and cannot write this one's again before they all reached the
// next call.
struct MmaScratch {
    float a[16][8], b[8][8], c[16][8];
};
static std::vector<MmaScratch> mma_scratch;
static inline void mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    auto operand = [](unsigned v) { return __uint_as_float(v & 0xffffe000u); };
    std::size_t threads = std::size_t(blockDim.x) * blockDim.y * blockDim.z;
    if (threads % 32 != 0) std::abort();  // a part warp: mma.sync needs all 32 lanes
    std::size_t lane = current % threads % 32, g = lane / 4, c = lane % 4;
    // Sized for every fiber of the launch at once: growing it while another warp waits in its
    // mma would move that warp's scratch.
    if (mma_scratch.size() < 2 * (fibers.size() / 32 + 1)) mma_scratch.resize(2 * (fibers.size() / 32 + 1));
    MmaScratch& m = mma_scratch[2 * (current / 32) + fibers[current].mmas++ % 2];
    m.a[g][c] = operand(a[0]), m.a[g + 8][c] = operand(a[1]);
    m.a[g][c + 4] = operand(a[2]), m.a[g + 8][c + 4] = operand(a[3]);
    m.b[c][g] = operand(b[0]), m.b[c + 4][g] = operand(b[1]);
    m.c[g][2 * c] = d[0], m.c[g][2 * c + 1] = d[1], m.c[g + 8][2 * c] = d[2], m.c[g + 8][2 * c + 1] = d[3];
    yield(Wait::Warp, 0, 32);
    const std::size_t at[4][2] = {{g, 2 * c}, {g, 2 * c + 1}, {g + 8, 2 * c}, {g + 8, 2 * c + 1}};
    for (int q = 0; q < 4; ++q) {
        float sum = m.c[at[q][0]][at[q][1]];
        for (int k = 0; k < 8; ++k) sum += m.a[at[q][0]][k] * m.b[k][at[q][1]];
        d[q] = sum;
    }
}

// The current block's `n` elements of a DYN_BLOCK_SHARED array.
template <class T>
static T* block_array(std::vector<std::vector<T>>& per_block, std::size_t n) {
    std::size_t blocks = std::size_t(gridDim.x) * gridDim.y * gridDim.z;
    if (per_block.size() < blocks) per_block.resize(blocks);
    std::vector<T>& mine = per_block[fibers[current].slot];
    if (mine.size() < n) mine.resize(n);
    return mine.data();
}

// ld_w and ld_act's check (emulate.h's header says what): the first broken rule of a launch is
// printed, and the launch fails.
static inline void reads(const void* p, bool weight) {
    const char* at = static_cast<const char*>(p);
    bool ok = !weight && fibers[current].waited;
    for (const auto& r : read_only) ok |= weight && at >= r.first && at < r.second;
    if (ok || misread) return;
    misread = true;
    if (weight)
        std::fprintf(stderr, "%s: ld_w of %p, which is not among the weights and BN (a launch writes it)\n", kernel, p);
    else
        std::fprintf(stderr, "%s: ld_act of %p before the wait for the previous launch\n", kernel, p);
}

}  // namespace dynofa_emu

#define DYN_EMU_READS(p, weight) dynofa_emu::reads(p, weight)
#define DYN_EMU_WAITED() (dynofa_emu::fibers[dynofa_emu::current].waited = true)
#define DYN_EMU_BODY() (dynofa_emu::fibers[dynofa_emu::current].waited = false)

static inline void __syncthreads() {
    dynofa_emu::yield(dynofa_emu::Wait::Barrier, 0, blockDim.x * blockDim.y * blockDim.z);
}

// Fibers switch only at a barrier or a poll, so these need no atomicity or fences here; the
// kernels rely on what they mean on a GPU.
static inline unsigned atomicAdd(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p += v;
    return old;
}
static inline void __threadfence() {}
template <class T>
static inline T __ldcg(const T* p) {
    return *p;
}
template <class T>
static inline T __ldca(const T* p) {
    return *p;
}
// A trap ends the process: the test that ran the kernel fails.
static inline void __trap() { std::abort(); }
#define DYN_SPIN_PAUSE() dynofa_emu::yield(dynofa_emu::Wait::Spin, 0, 0)
#define DYN_BLOCK_SHARED(T, name, n)                          \
    static std::vector<std::vector<T>> name##_per_block;      \
    T* name = dynofa_emu::block_array(name##_per_block, (n))
#define DYN_DYNAMIC_SHARED(T, name) DYN_BLOCK_SHARED(T, name, dynofa_emu::dynamic_shared / sizeof(T))
static inline unsigned dyn_shared_bytes() { return unsigned(dynofa_emu::dynamic_shared); }

// The C entry point: 0 on success, -1 for an unknown kernel, -2 for a divergent barrier, -3 for a
// block size a GPU refuses, -4 for a load on the wrong side of the wait or of the weights (reads).
// DYNOFA_KERNELS(X) (defined by gpu::source()) lists the kernels.
#define DYNOFA_EMU_DISPATCH(k) \
    if (std::strcmp(name, #k) == 0) return dynofa_emu::launch(k, grid, block, shared, args, false);
#define DYNOFA_EMU_ENTRY                                                                               \
    extern "C" void dynofa_emu_reverse(int mode) {                                                      \
        dynofa_emu::reverse = (mode & 1) != 0;                                                         \
        dynofa_emu::reverse_threads = (mode & 2) != 0;                                                 \
    }                                                                                                  \
    extern "C" void dynofa_emu_read_only(const void* begin, std::size_t bytes) {                        \
        if (!begin) return dynofa_emu::read_only.clear();                                              \
        const char* at = static_cast<const char*>(begin);                                              \
        dynofa_emu::read_only.emplace_back(at, at + bytes);                                            \
    }                                                                                                  \
    extern "C" int dynofa_emu_launch(const char* name, const unsigned* grid_dim, const unsigned* block_dim, \
                                     unsigned shared, void** args) {                                   \
        dim3 grid{grid_dim[0], grid_dim[1], grid_dim[2]}, block{block_dim[0], block_dim[1], block_dim[2]}; \
        dynofa_emu::kernel = name;                                                                     \
        DYNOFA_KERNELS(DYNOFA_EMU_DISPATCH)                                                            \
        if (std::strcmp(name, "dynofa_persistent") == 0)                                               \
            return dynofa_emu::launch(dynofa_persistent, grid, block, shared, args, true);             \
        return -1;                                                                                     \
    }
