// Host emulation of the subset of CUDA that dynofa.cu uses, so that g++ compiles the very kernels that
// NVRTC compiles and the launch plan can be checked on a machine without a GPU (kernels/tests/
// gpu_emulated.rs). Slow, single-threaded and exact about what matters for correctness:
//
// - every thread of a block runs as a fiber (ucontext) with its own stack and registers;
// - __syncthreads switches to the next fiber of the block; a block resumes its fibers only after all
//   of them reached the barrier, so a read after a barrier sees every write before it;
// - __shared__ is a static array (one block runs at a time), blockIdx/threadIdx/... are globals set by
//   the scheduler before a fiber resumes;
// - a barrier that only some threads reach (undefined on a GPU) fails the launch;
// - blocks run in grid order, or last block first after dynofa_emu_reverse(1); the threads of a
//   block run in order between barriers, or last thread first after dynofa_emu_reverse(2) (3: both).
//   A test runs each to check that no result depends on the order: a read of shared memory that
//   misses its barrier sees another value in one of the two thread orders.
//
// A translation unit includes this header, then the kernel source (dynofa_kernels::gpu::source()),
// then writes DYNOFA_EMU_ENTRY, which defines the C entry points dynofa_emu_launch and
// dynofa_emu_reverse.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include <ucontext.h>

struct dim3 {
    unsigned x, y, z;
};

// CUDA's vector type (16-byte aligned there; the kernels' float4 accesses are aligned on the GPU and
// need not be here).
struct float4 {
    float x, y, z, w;
};

static dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

namespace dynofa_emu {

// Enough for the kernels' register tiles; the scheduler's frames are on the caller's stack.
constexpr std::size_t STACK = 64 * 1024;

struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    dim3 tid;
    bool done;
};

static std::vector<Fiber> fibers;
static ucontext_t scheduler;
static std::size_t current;
static std::function<void()> body;
static bool reverse, reverse_threads;

static void trampoline() {
    body();
    fibers[current].done = true;
    // Returning resumes `scheduler` through uc_link.
}

// Runs one block; false when a barrier was reached by only some of its threads.
static bool run_block(std::size_t threads) {
    for (std::size_t t = 0; t < threads; ++t) {
        Fiber& f = fibers[t];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &scheduler;
        f.done = false;
        makecontext(&f.ctx, trampoline, 0);
    }
    for (;;) {
        std::size_t waiting = 0, finished = 0;
        for (std::size_t i = 0; i < threads; ++i) {
            std::size_t t = reverse_threads ? threads - 1 - i : i;
            if (fibers[t].done) {
                ++finished;
                continue;
            }
            current = t;
            threadIdx = fibers[t].tid;
            swapcontext(&scheduler, &fibers[t].ctx);
            if (fibers[t].done) ++finished;
            else ++waiting;
        }
        if (waiting == 0) return true;
        if (finished != 0) return false;
    }
}

template <class... A, std::size_t... I>
static void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<A*>(args[I])...);
}

// Launches `kernel` with cuLaunchKernel's argument convention (an array of pointers to the values).
template <class... A>
static int launch(void (*kernel)(A...), dim3 grid, dim3 block, void** args) {
    std::size_t threads = std::size_t(block.x) * block.y * block.z;
    if (threads == 0 || threads > 1024) return -3;
    if (fibers.size() < threads) fibers.resize(threads);
    for (std::size_t t = 0; t < threads; ++t) {
        if (fibers[t].stack.size() != STACK) fibers[t].stack.resize(STACK);
        fibers[t].tid = dim3{unsigned(t % block.x), unsigned(t / block.x % block.y), unsigned(t / (block.x * block.y))};
    }
    gridDim = grid;
    blockDim = block;
    body = [&] { call(kernel, args, std::index_sequence_for<A...>{}); };
    std::size_t blocks = std::size_t(grid.x) * grid.y * grid.z;
    for (std::size_t i = 0; i < blocks; ++i) {
        std::size_t b = reverse ? blocks - 1 - i : i;
        blockIdx = dim3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (std::size_t(grid.x) * grid.y))};
        if (!run_block(threads)) return -2;
    }
    return 0;
}

}  // namespace dynofa_emu

static inline void __syncthreads() {
    swapcontext(&dynofa_emu::fibers[dynofa_emu::current].ctx, &dynofa_emu::scheduler);
}

// Blocks run one after another and a fiber switches only at a barrier, so these need no atomicity
// or fences here; the kernels rely on what they mean on a GPU.
static inline unsigned atomicAdd(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p += v;
    return old;
}
static inline void __threadfence() {}
static inline float __ldcg(const float* p) { return *p; }

// The C entry point: 0 on success, -1 for an unknown kernel, -2 for a divergent barrier, -3 for a
// block size a GPU refuses. DYNOFA_KERNELS(X) (defined by gpu::source()) lists the kernels.
#define DYNOFA_EMU_DISPATCH(k) \
    if (std::strcmp(name, #k) == 0) return dynofa_emu::launch(k, grid, block, args);
#define DYNOFA_EMU_ENTRY                                                                               \
    extern "C" void dynofa_emu_reverse(int mode) {                                                      \
        dynofa_emu::reverse = (mode & 1) != 0;                                                         \
        dynofa_emu::reverse_threads = (mode & 2) != 0;                                                 \
    }                                                                                                  \
    extern "C" int dynofa_emu_launch(const char* name, const unsigned* grid_dim, const unsigned* block_dim, \
                                     void** args) {                                                    \
        dim3 grid{grid_dim[0], grid_dim[1], grid_dim[2]}, block{block_dim[0], block_dim[1], block_dim[2]}; \
        DYNOFA_KERNELS(DYNOFA_EMU_DISPATCH)                                                            \
        return -1;                                                                                     \
    }
