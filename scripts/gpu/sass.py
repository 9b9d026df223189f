#!/usr/bin/env python3
"""The machine code of dynofa's kernels without a GPU: the instructions of each loop, by opcode.

Where no GPU is lent, this is what can be measured of a kernel's speed: how many instructions a
k step of a GEMM tile takes, how many of them are shared-memory loads, whether a change moved
address arithmetic out of a loop. NVRTC (libnvrtc, as `.ci/run` fetches it into
target/ci-nvrtc/lib) compiles the engine's source for a real GPU (sm_90: H100/H200, sm_87: Orin)
into a cubin, and cuobjdump disassembles it with the nvdisasm beside it (NVIDIA's
`nvidia-cuda-cuobjdump` and `nvidia-cuda-nvdisasm` wheels from PyPI have them: unzip both into one
folder and pass --cuobjdump or put it on PATH; `.ci/run` fetches them into target/ci-nvrtc/bin):

    cargo run -q -p dynofa-kernels --example cuda-source > /tmp/dynofa.cu
    python3 scripts/gpu/sass.py /tmp/dynofa.cu --arch sm_90 --kernel dynofa_pointwise_small

Each line is a loop (a backward branch) of the kernel: its addresses, its instruction count and
its opcodes, most frequent first; ptxas' registers and spills come first, and on sm_90 where the
kernel waits for the previous one (griddepcontrol.wait), how many global loads come before (how
many of them read-only, how many L2-coherent: activations) and how many read-only loads it has.
`hal-jetson/tests/nvrtc.rs` bounds the GEMM tiles' k steps with it. docs/gpu.md, "Tuning", says
what the counts found.
"""

import argparse
import collections
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile


def nvrtc_library():
    """libnvrtc.so from $DYNOFA_NVRTC, the loader path or target/ci-nvrtc/lib."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dirs = [os.environ.get("DYNOFA_NVRTC", "")] + os.environ.get("LD_LIBRARY_PATH", "").split(":")
    dirs += [os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(repo, "target")), "ci-nvrtc", "lib")]
    for d in filter(None, dirs):
        path = os.path.join(d, "libnvrtc.so")
        if os.path.exists(path):
            return path
    raise SystemExit("no libnvrtc.so: set DYNOFA_NVRTC to its folder (`.ci/run` fetches one into "
                     "target/ci-nvrtc/lib)")


def compile_cubin(source, arch):
    """(cubin bytes, ptxas' log) of `source` compiled by NVRTC for `arch` (sm_NN)."""
    lib = ctypes.CDLL(nvrtc_library())
    prog = ctypes.c_void_p()

    def log():
        n = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value)
        lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode()

    if lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"dynofa.cu", 0, None, None):
        raise SystemExit("NVRTC could not create a program")
    opts = [f"--gpu-architecture={arch}".encode(), b"--ptxas-options=-v"]
    if lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)):
        raise SystemExit(f"NVRTC failed for {arch}:\n{log()}")
    n = ctypes.c_size_t()
    if lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)):
        raise SystemExit(f"no cubin for {arch}: name a real GPU (sm_NN), not a virtual one (compute_NN)")
    cubin = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetCUBIN(prog, cubin)
    return cubin.raw, log()


def functions(sass):
    """cuobjdump -sass output as {kernel: [(address, instruction)]}."""
    out = {}
    for part in re.split(r"\n\s*Function : ", sass)[1:]:
        name = part.split("\n", 1)[0].strip()
        out[name] = [(int(m.group(1), 16), m.group(2).strip())
                     for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", part)]
    return out


def opcode(instruction):
    """The opcode of an instruction without its predicate; loads and stores keep their width
    (LDS.64), the rest their base name (IMAD for IMAD.WIDE)."""
    op = re.sub(r"^@!?U?P\w+\s+", "", instruction).split()[0]
    return op if op.startswith(("LDS", "STS", "LDG", "STG")) else op.split(".")[0]


def loops(instructions):
    """Each loop (a branch to a lower address) as (first address, last address, Counter of
    opcodes), in the order of their branches."""
    index = {a: i for i, (a, _) in enumerate(instructions)}
    found = []
    for i, (a, text) in enumerate(instructions):
        target = re.search(r"\bBRA\b.*?0x([0-9a-f]+)\s*$", text)
        if target and int(target.group(1), 16) < a and int(target.group(1), 16) in index:
            body = instructions[index[int(target.group(1), 16)]:i + 1]
            found.append((body[0][0], a, collections.Counter(opcode(t) for _, t in body)))
    return found


def wait_point(instructions):
    """(index, global loads before it, read-only ones among them, L2-coherent ones among them,
    read-only loads in the whole kernel) of the kernel's wait for the previous one
    (griddepcontrol.wait, ACQBULK in SASS), or None. ptxas moves that wait above loads of
    read-only (.nc, LDG.E.CONSTANT) data, so a weight load written before the wait may issue after
    it, and a read-only load of the previous kernel's output written after it may issue before:
    the kernels load weights with ld.global.ca (LDG.E.STRONG.SM) and activations with
    ld.global.cg (LDG.E.STRONG.GPU), which stay where the source puts them, and this says where
    they went."""
    ops = [opcode(t) for _, t in instructions]
    if "ACQBULK" not in ops:
        return None
    i = ops.index("ACQBULK")
    before = [op for op in ops[:i] if op.startswith("LDG")]
    return (i, len(before), sum(".CONSTANT" in op for op in before), sum(op.endswith(".STRONG.GPU") for op in before),
            sum(op.startswith("LDG") and ".CONSTANT" in op for op in ops))


def describe(start, end, ops):
    """One summary line of a loop: its opcodes, most frequent first."""
    top = ", ".join(f"{op} {n}" for op, n in ops.most_common())
    return f"loop {start:#x}..{end:#x}: {sum(ops.values())} instructions: {top}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the CUDA source (cargo run -q -p dynofa-kernels --example cuda-source)")
    p.add_argument("--arch", default="sm_90", help="a real GPU architecture (default sm_90)")
    p.add_argument("--kernel", action="append", help="kernels to show (default: every kernel)")
    p.add_argument("--cuobjdump", default=shutil.which("cuobjdump"), help="cuobjdump's path (default: PATH)")
    args = p.parse_args()
    if not args.cuobjdump:
        raise SystemExit("no cuobjdump: pip download nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm, unzip both "
                         "into one folder and pass --cuobjdump")
    with open(args.source) as f:
        cubin, log = compile_cubin(f.read(), args.arch)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        done = subprocess.run([args.cuobjdump, "-sass", f.name], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args.cuobjdump} -sass failed: {done.stderr.strip()}")
    sass = done.stdout
    for name, instructions in functions(sass).items():
        if args.kernel and name not in args.kernel:
            continue
        props = re.search(rf"Function properties for {name}\n.*?(\d+ bytes stack frame.*?)\n.*?(Used .*?)\n", log,
                          re.S)
        wait = wait_point(instructions)
        print(f"{name}: {len(instructions)} instructions" + (f"; {props.group(1)}; {props.group(2)}" if props else "")
              + (f"; waits for the previous kernel at instruction {wait[0]}, after {wait[1]} global loads "
                 f"({wait[2]} read-only, {wait[3]} from L2); {wait[4]} read-only loads in all" if wait else ""))
        for start, end, ops in loops(instructions):
            print("  " + describe(start, end, ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
