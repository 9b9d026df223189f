#!/usr/bin/env python3
"""dynofa's GPU check, on a machine with an NVIDIA GPU and torch but no Rust or network.

Stage the folder first where Rust is (`cargo xtask gpu-check`, see docs/gpu.md), then from the
repository root:

    python3 scripts/gpu/check.py gpu-check

1. correctness: the CUDA engine on every golden case against the CPU engine and `ofa`'s logits
   (rel. error <= 1e-4), and zero host allocations over 1,000 switches + inferences (gpu-test);
   the HAL conformance suite on the Linux platform, CPU and CUDA engines (conformance);
2. dynofa's batch-1 latency of the w1.2 sub-networks max/mid/min and the host cost of a switch
   between captured sub-networks (gpu-bench; also the latency of plans without the PointwiseWarps
   or the DepthwiseRegion kernel and, where the GPU has programmatic dependent launch, of graphs
   that do not use it);
3. `dynofa run --backend cuda`: the runtime manager's built-in demo on the GPU for 10 s (trace
   and plot saved as run-cuda.csv and run-cuda.svg), and `dynofa eval` of the repository's fixture
   images on both engines (the same top-1 and top-5 counts?);
4. PyTorch on the same sub-networks and weights (`dynofa gen-weights`, loaded into the `ofa`
   package from the staged wheel): eager, CUDA graph, torch.compile(mode="reduce-overhead"), each
   mode in its own process. Every timed call does what dynofa's infer does: input from host
   memory, logits back to host memory, synchronised;
5. the table of ratios, then the lines that explain it (variants, tune's picks, where each plan's
   time goes by kernel, what the 5x bar leaves each launch, the launches an earlier run timed
   too), last. Exit status 1 unless the correctness check and the conformance suite ran and
   passed.

`python3 scripts/gpu/check.py peer ...` is one PyTorch process (used by step 4).
"""

import argparse
import collections
import csv
import glob
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

NAMED = {
    "max": {"ks": 7, "e": 6, "d": 4, "r": 224},
    "mid": {"ks": 5, "e": 4, "d": 3, "r": 192},
    "min": {"ks": 3, "e": 3, "d": 2, "r": 160},
}
MODES = ["eager", "graph", "compile"]
# The bench's variants of dynofa's plans: line suffix, what the summary calls it, the kernels it
# leaves out (whose layers kernel_wins compares), and whether its latency is a row of the table.
Variant = collections.namedtuple("Variant", "suffix label leaves_out row")
VARIANTS = [
    # The host side's alternatives: the same plans, timed with infer's halves.
    Variant("cachedinput", "cached (not write-combined) page-locked input", (), False),
    Variant("copylogits", "logits copied back by the graph (not written to mapped host memory)", (), False),
    Variant("mappedinput", "input read by the first kernel from mapped host memory (not copied to the GPU)", (),
            False),
    Variant("nowarps", "without the warps kernels", ("dynofa_pointwise_warps", "dynofa_pointwise_warps16"), False),
    Variant("noksplit", "without PointwiseKSplit", ("dynofa_pointwise_ksplit",), False),
    Variant("noregion", "without DepthwiseRegion", ("dynofa_depthwise_region",), False),
    # A fused kernel replaces several launches: its plans do not line up launch by launch.
    Variant("nofused", "without the fused kernels (StemBlock; ExpandDepthwise and DepthwiseProject are only "
                       "tune's)", (), False),
    Variant("tuned", "each layer's alternatives measured at capture (GpuOptions::tune)", (), True),
    Variant("tuned-nomma", "the same without PointwiseMma (the tensor cores) among the alternatives "
                           "(GpuOptions::pointwise_mma)", (), True),
    Variant("persistent", "every launch in one persistent kernel, barriers across the GPU between them "
                          "(GpuOptions::persistent)", (), True),
    Variant("persistent-fences", "the same with the barrier ordered by fences rather than release/acquire "
                                 "atomics (GpuOptions::barrier)", (), True),
    Variant("persistent-tuned", "each sub-network's graph the faster of a node per launch and the persistent "
                                "kernel, measured at capture with the layers' alternatives (GpuOptions::persistent "
                                "and tune)", (), True),
]
LABELS = {v.suffix: v.label for v in VARIANTS}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# one PyTorch peer (its own process)


def read_safetensors(path):
    """A safetensors file as {name: torch tensor}, without the safetensors package."""
    import torch

    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": torch.float32, "I64": torch.int64}.get(t["dtype"])
        if dtype is None:
            raise SystemExit(f"{path}: {name} is {t['dtype']}, expected F32 (or I64 for BN counters)")
        a, b = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(body[a:b]), dtype=dtype).reshape(t["shape"])
    return out


def import_ofa(wheel):
    """`ofa`'s OFAMobileNetV3 from the staged wheel (a pure-Python wheel imports as a zip)."""
    if wheel:
        sys.path.insert(0, wheel)
    try:
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    except ModuleNotFoundError as e:
        # ofa imports torchvision and PIL for its data loaders only; stand in for them if absent.
        if e.name and e.name.split(".")[0] in ("torchvision", "PIL"):
            import types

            class Stub(types.ModuleType):
                # A package (so that submodules import) whose every public attribute is a stub too.
                def __init__(self, name):
                    super().__init__(name)
                    self.__path__ = []

                def __getattr__(self, attr):
                    if attr.startswith("__"):
                        raise AttributeError(attr)
                    return Stub(f"{self.__name__}.{attr}")

                def __call__(self, *a, **k):
                    return self

                def __mro_entries__(self, bases):
                    return (object,)

            class Finder:
                def find_spec(self, name, path, target=None):
                    if name.split(".")[0] in ("torchvision", "PIL"):
                        import importlib.machinery

                        return importlib.machinery.ModuleSpec(name, self, is_package=True)

                def create_module(self, spec):
                    return Stub(spec.name)

                def exec_module(self, module):
                    pass

            log(f"note: {e.name} is missing; stubbed (ofa needs it only to load datasets)")
            sys.meta_path.append(Finder())
            for k in [k for k in sys.modules if k.startswith("ofa")]:
                del sys.modules[k]
            from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
        else:
            raise
    return OFAMobileNetV3


def cmd_peer(args):
    import torch

    OFAMobileNetV3 = import_ofa(args.wheel)
    net = OFAMobileNetV3(
        n_classes=1000,
        bn_param=(0.1, 1e-5),
        dropout_rate=0.0,
        width_mult=1.2,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    # nn.Module's strict load (OFAMobileNetV3's override silently keeps missing keys), as
    # scripts/ref/ofa_ref.py's load_supernet does.
    torch.nn.Module.load_state_dict(net, read_safetensors(args.weights), strict=True)
    net.eval()
    device = torch.device(args.device)
    log(f"peer torch {torch.__version__} mode={args.mode} device={device}")
    for which in args.which.split(","):
        c = NAMED[which]
        net.set_active_subnet(ks=c["ks"], e=c["e"], d=c["d"])
        model = net.get_active_subnet(preserve_weight=True).eval().to(device)
        r = c["r"]
        x_host = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(0))
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        with torch.inference_mode():
            if args.mode == "eager":
                step = lambda: model(x_host.to(device)).cpu()  # noqa: E731
            elif args.mode == "compile":
                compiled = torch.compile(model, mode="reduce-overhead")
                step = lambda: compiled(x_host.to(device)).cpu()  # noqa: E731
            elif args.mode == "graph":
                static_x = x_host.to(device)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):
                        model(static_x)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_y = model(static_x)

                def step():
                    static_x.copy_(x_host)
                    graph.replay()
                    return static_y.cpu()

            else:
                raise SystemExit(f"unknown mode {args.mode}")
            t0 = time.perf_counter()
            for _ in range(args.warmup):
                step()
            sync()
            log(f"{which}: warm-up {time.perf_counter() - t0:.1f} s")
            ts = []
            for _ in range(args.reps):
                t = time.perf_counter_ns()
                step()
                sync()
                ts.append(time.perf_counter_ns() - t)
        print(f"torch-{args.mode} {which} median_ms={statistics.median(ts) / 1e6:.4f}", flush=True)


# ----------------------------------------------------------------------------------------------
# the check


# One launch of launches.csv: its kernel, threads per block and GPU time (us), and what makes it
# the same launch in another run's file (grid, block and integer arguments).
PlanLaunch = collections.namedtuple("PlanLaunch", "kernel threads us shape", defaults=(None,))


def read_plans(path):
    """launches.csv as {subnet row name (`max`, `max-nowarps`, ...): [PlanLaunch] in launch
    order}; empty if the bench wrote none."""
    try:
        with open(path) as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    plans = {}
    for r in sorted(rows, key=lambda r: int(r["index"])):
        threads = 1
        for d in r["block"].split("x"):
            threads *= int(d)
        shape = (r["grid"], r["block"], r["ints"])
        plans.setdefault(r["subnet"], []).append(PlanLaunch(r["kernel"], threads, float(r["gpu_us"]), shape))
    return plans


def wins(which, pairs, what):
    """`max N <what>: mine us vs theirs us (faster on W)` for (mine, theirs) pairs of GPU times."""
    mine, theirs = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    faster = sum(p[0] < p[1] for p in pairs)
    return f"{which} {len(pairs)} {what} {mine:.1f} us vs {theirs:.1f} us (faster on {faster})"


def kernel_wins(plans):
    """Per latency-shaped kernel, the layers where the default plans use it against the same layers
    in the plans without it (rows `max` and `max-nowarps` ... line up by index: the plans differ
    only in the kernel of those layers), as summary lines."""
    lines = []
    for suffix, kernel in [(v.suffix, k) for v in VARIANTS for k in v.leaves_out]:
        parts = []
        for which in NAMED:
            other = plans.get(f"{which}-{suffix}", [])
            pairs = [(l.us, other[i].us) for i, l in enumerate(plans.get(which, []))
                     if l.kernel == kernel and i < len(other)]
            if pairs:
                parts.append(wins(which, pairs, "layers"))
        if parts:
            lines.append(f"{kernel} against the plans without it, each launch timed alone: " + "; ".join(parts))
    return lines


# The fused kernels and how many launches of the plans without them (`-nofused`) each replaces.
FUSED = {"dynofa_stem_block": 3, "dynofa_expand_depthwise": 2, "dynofa_depthwise_project": 2}


def line_up(plan, other):
    """`plan`'s launches and `other`'s as pairs of groups that compute the same layers (one launch
    each, or a fused kernel against the FUSED count of launches it replaces, on either side), or
    None where they do not line up."""
    groups, i, j = [], 0, 0
    while i < len(plan) and j < len(other):
        a, b = plan[i].kernel, other[j].kernel
        if a != b and b in FUSED:
            n, m = FUSED[b], 1  # `other` fused what `plan` runs apart
        elif a != b and a in FUSED:
            n, m = 1, FUSED[a]  # and the other way round
        else:
            n, m = 1, 1
        groups.append((plan[i:i + n], other[j:j + m]))
        i, j = i + n, j + m
    return groups if (i, j) == (len(plan), len(other)) else None


def fused_wins(plans):
    """Per fused kernel, its launches in the default plans against the launches they replace in
    the plans without fused kernels (rows `max` and `max-nofused` ..., lined up: the plans differ
    only there), as summary lines."""
    lines = []
    for kernel, replaced in FUSED.items():
        parts = []
        for which in NAMED:
            groups = line_up(plans.get(f"{which}-nofused", []), plans.get(which, [])) or []
            pairs = [(mine[0].us, sum(a.us for a in apart)) for apart, mine in groups if mine[0].kernel == kernel]
            if pairs:
                parts.append(wins(which, pairs, "x:"))
        if parts:
            lines.append(f"{kernel} against the {replaced} launches it replaces, each launch timed alone: "
                         + "; ".join(parts))
    return lines


def tuned_picks(plans):
    """Per sub-network, the launches where measurement (`-tuned` rows) picked another kernel or
    block than the default plan, against the plan's, as summary lines: which kernels (threads per
    block; `+` joins the launches a fused kernel replaced) it swapped and how often, and their
    time. Plans whose launches do not line up get their totals only."""
    label = lambda group: "+".join(f"{l.kernel}[{l.threads}]" for l in group)  # noqa: E731
    parts = []
    for which in NAMED:
        mine, tuned = plans.get(which, []), plans.get(f"{which}-tuned", [])
        if not mine or not tuned:
            continue
        groups = line_up(mine, tuned)
        if groups is None:
            parts.append(f"{which} {len(tuned)} launches {sum(l.us for l in tuned):.1f} us vs the plan's "
                         f"{len(mine)} {sum(l.us for l in mine):.1f} us")
            continue
        changed = [(a, b) for a, b in groups if label(a) != label(b)]
        swaps = collections.Counter(f"{label(a)} -> {label(b)}" for a, b in changed)
        pairs = [(sum(l.us for l in b), sum(l.us for l in a)) for a, b in changed]
        parts.append(wins(which, pairs, "changed layers") + "".join(f", {n}x {k}" for k, n in swaps.items()))
    return ["tune's picks against the default plans, each launch timed alone: " + "; ".join(parts)] if parts else []


def time_shares(plans):
    """Per default plan, where its launches' GPU time goes by kernel (each launch timed alone, so
    each with its node's cost), largest first, as summary lines: which kernels a design change
    should aim at."""
    lines = []
    for which in NAMED:
        plan = plans.get(which, [])
        total = sum(l.us for l in plan)
        if not total:
            continue
        by_kernel = collections.defaultdict(list)
        for l in plan:
            by_kernel[l.kernel].append(l.us)
        kinds = sorted(by_kernel.items(), key=lambda kv: -sum(kv[1]))
        lines.append(f"where {which}'s {len(plan)} launches go, each timed alone ({total:.1f} us): " + ", ".join(
            f"{k} {len(v)}x {sum(v):.1f} us ({100 * sum(v) / total:.0f}%)" for k, v in kinds))
    return lines


def against_baseline(plans, baseline, name):
    """Per sub-network and kernel, the launches of this run's default plans that an earlier run's
    launches.csv (`baseline`, called `name`) also timed, the same kernel with the same grid, block
    and arguments, with both times, as summary lines: what changed kernels gained, layer for layer
    (on another GPU of the same kind, within a few percent)."""
    parts = []
    for which in NAMED:
        before = collections.defaultdict(list)
        for l in baseline.get(which, []):
            before[(l.kernel, l.shape)].append(l.us)
        pairs = collections.defaultdict(list)
        for l in plans.get(which, []):
            if before[(l.kernel, l.shape)]:
                pairs[l.kernel].append((l.us, before[(l.kernel, l.shape)].pop(0)))
        kinds = sorted(pairs.items(), key=lambda kv: -sum(b for _, b in kv[1]))
        parts += [f"{which} {k} {len(v)}x {sum(b for _, b in v):.1f} -> {sum(a for a, _ in v):.1f} us "
                  f"({sum(a for a, _ in v) / sum(b for _, b in v):.2f}x)" for k, v in kinds]
    return [f"the same launches as {name}, each timed alone, then -> now: " + "; ".join(parts)] if parts else []


def bar_budgets(dynofa, kernels, torch_ms, plans, floor_us):
    """Per sub-network, what the 5x bar leaves each launch of the default plan once the path
    outside the kernels (dynofa's latency less its kernels alone: the host copy, the input's
    transfer, the replay and the wait) is paid, against an empty node and the launches' mean now,
    as summary lines."""
    lines = []
    for which in NAMED:
        best = min([torch_ms[(m, which)] for m in MODES if (m, which) in torch_ms], default=None)
        n = len(plans.get(which, []))
        if not best or which not in dynofa or which not in kernels or not n:
            continue
        bar_us, outside = best / 5 * 1e3, dynofa[which] * 1e3 - kernels[which]
        left = bar_us - outside
        floor = f", an empty node {floor_us:.2f} us" if floor_us is not None else ""
        lines.append(f"the 5x bar for {which}: {bar_us:.1f} us; outside the kernels {outside:.1f} us; left "
                     f"{left:.1f} us for {n} launches, {left / n:.2f} us each, against {kernels[which] / n:.2f} us "
                     f"each now (kernels alone / launches){floor}")
    return lines


def conformance_verdict(rc, out):
    """The conformance suite's verdict from its exit status and the test harness's output: `ok, N
    passed`, what its CUDA tests said if they skipped (the suite passes then), or FAILED and the
    failing tests."""
    result = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", out)
    if rc != 0 or not result or result.group(1) != "ok":
        failed = re.findall(r"^test (\S+) \.\.\. FAILED", out, re.M)
        return f"FAILED (exit {rc})" + (f": {', '.join(failed)}" if failed else "")
    skipped = re.search(r"skipped: (.*)", out)
    return f"ok, {result.group(2)} passed" + (f", but the CUDA tests skipped: {skipped.group(1)}" if skipped else "")


def verdicts(default, variants):
    """Per bench variant timed on all three sub-networks, whether it was faster or slower than the
    default engine on all of them (by more than 2%, the spread of repeated runs), as summary
    lines: where the defaults (GpuOptions::default) should change."""
    lines = []
    for suffix, ms in variants.items():
        if not all(w in ms and w in default for w in NAMED):
            continue
        ratios = [ms[w] / default[w] for w in NAMED]
        if all(r < 0.98 for r in ratios):
            word = "faster"
        elif all(r > 1.02 for r in ratios):
            word = "slower"
        else:
            continue
        lines.append(f"{word} than the defaults on max, mid and min ({', '.join(f'{r:.2f}x' for r in ratios)} "
                     f"the time): {LABELS[suffix]}")
    return lines


def nvrtc_env():
    """The environment with a libnvrtc on the loader path: cudarc (built for CUDA 12) looks for
    libnvrtc.so and libnvrtc.so.12/.11, so a CUDA 13 libnvrtc.so.13 (e.g. torch's pip wheels) is
    offered as libnvrtc.so through a symlink."""
    env = dict(os.environ)
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += sorted(glob.glob("/usr/local/cuda*/lib64")) + sorted(glob.glob("/usr/local/cuda*/targets/*/lib"))
    try:
        import torch

        site = os.path.dirname(os.path.dirname(torch.__file__))
        dirs += sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib")))
        dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "lib")))
    except ImportError:
        pass
    for d in dirs:
        libs = sorted(glob.glob(os.path.join(d, "libnvrtc.so*")))
        libs = [lib for lib in libs if "builtins" not in lib and "alt" not in lib]
        if not libs:
            continue
        link_dir = tempfile.mkdtemp(prefix="dynofa-nvrtc-")
        os.symlink(libs[-1], os.path.join(link_dir, "libnvrtc.so"))
        env["LD_LIBRARY_PATH"] = ":".join([link_dir, d] + [x for x in env.get("LD_LIBRARY_PATH", "").split(":") if x])
        log(f"libnvrtc: {libs[-1]}")
        return env
    log("note: no libnvrtc found; the CUDA engine will say so unless its kernels are cached")
    return env


def run(cmd, env=None, timeout=600):
    log("$ " + " ".join(cmd))
    t0 = time.time()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log(f"timed out after {timeout} s")
        out = e.stdout or ""
        return 124, out.decode() if isinstance(out, bytes) else out
    except OSError as e:
        log(f"cannot run {cmd[0]}: {e}")
        return 127, ""
    sys.stderr.write(p.stderr[-4000:])
    sys.stdout.write(p.stdout)
    sys.stdout.flush()
    log(f"({time.time() - t0:.1f} s, exit {p.returncode})")
    return p.returncode, p.stdout


def cmd_check(args):
    staged = os.path.abspath(args.staged)
    for f in ["dynofa", "gpu-test", "gpu-bench", "conformance"]:
        if not os.path.exists(os.path.join(staged, f)):
            raise SystemExit(f"{staged}/{f} is missing: stage the folder with `cargo xtask gpu-check`")
    wheels = glob.glob(os.path.join(staged, "ofa-*.whl"))
    _, smi = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], timeout=60)
    gpu = smi.strip().splitlines()[0].split(",")[0] if smi.strip() else "no GPU found by nvidia-smi"
    env = nvrtc_env()
    env["DYNOFA_GOLDENS"] = os.path.join(REPO, "kernels", "goldens")
    env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dynofa-cache-")
    # What the CUDA engine finds: the GPU, its kind, and the architectures NVRTC compiles for.
    _, platform = run([os.path.join(staged, "dynofa"), "platform", "--sample-ms", "0"], env=env, timeout=60)
    cuda_line = next((l for l in platform.splitlines() if l.startswith("cuda:")), "cuda: not reported")

    # What the steps write: the --save folder, else a temporary one.
    out_dir = args.save or tempfile.mkdtemp(prefix="dynofa-gpu-check-out-")
    os.makedirs(out_dir, exist_ok=True)

    def keep(name, text):
        # Written as each step ends, so a check cut short still brings back what it measured.
        if args.save:
            with open(os.path.join(args.save, name), "w") as f:
                f.write(text)

    # The SM clock while dynofa runs (a GPU held at a low clock would explain slow kernels).
    clocks_path = os.path.join(out_dir, "clocks.csv")
    query = "timestamp,clocks.sm,clocks.max.sm,clocks.mem,pstate,power.draw,clocks_throttle_reasons.active"
    try:
        with open(clocks_path, "w") as f:
            sampler = subprocess.Popen(["nvidia-smi", f"--query-gpu={query}", "--format=csv", "-lms", "100"], stdout=f)
    except OSError:
        sampler = None
    rc_test, test_out = run([os.path.join(staged, "gpu-test")], env=env, timeout=300)
    keep("gpu-test.txt", test_out)
    # The test passes by skipping where the engine cannot start: require its final "gpu: ok".
    skipped = re.search(r"gpu: skipped: (.*)", test_out)
    if rc_test != 0:
        verdict = f"FAILED (exit {rc_test})"
    elif skipped:
        verdict = f"NOT RUN: {skipped.group(1)}"
    else:
        verdict = "ok" if "gpu: ok" in test_out else "FAILED (no verdict)"
    # One test at a time (its pacing checks want an idle machine), printing (a skip says why).
    suite_cmd = [os.path.join(staged, "conformance"), "--test-threads", "1", "--nocapture"]
    rc_suite, suite_out = run(suite_cmd, env=env, timeout=300)
    keep("conformance.txt", suite_out)
    suite = conformance_verdict(rc_suite, suite_out)
    launches = os.path.join(out_dir, "launches.csv")
    bench_cmd = [os.path.join(staged, "gpu-bench"), "--runs", str(args.runs), "--launches", launches]
    _, bench = run(bench_cmd, env=env, timeout=300)
    keep("gpu-bench.txt", bench)
    clock = "not sampled"
    if sampler:
        sampler.terminate()
        sampler.wait()
        with open(clocks_path) as f:
            mhz = [int(m.group(1)) for m in re.finditer(r", (\d+) MHz, (\d+) MHz, (\d+) MHz", f.read())]
        if mhz:
            clock = f"median {statistics.median(mhz)} MHz, max {max(mhz)} MHz over {len(mhz)} samples"
    dynofa = {m.group(1): float(m.group(2)) for m in re.finditer(r"dynofa-cuda (\w+) median_ms=([\d.]+)", bench)}
    switch = re.search(r"switch median_us=([\d.]+) p99_us=([\d.]+) max_us=([\d.]+)", bench)
    plain = {m.group(1): float(m.group(2)) for m in re.finditer(r"dynofa-cuda-plain (\w+) median_ms=([\d.]+)", bench)}
    kernels = {m.group(1): float(m.group(2)) for m in re.finditer(r"dynofa-cuda-kernels (\w+) gpu_us=([\d.]+)", bench)}
    # The bench's variants: {suffix: ({name: ms}, {name: kernels us})}.
    variants = {
        suffix: tuple(
            {m.group(1): float(m.group(2)) for m in re.finditer(rf"dynofa-cuda-{suffix}{kind} (\w+) {key}=([\d.]+)", bench)}
            for kind, key in [("", "median_ms"), ("-kernels", "gpu_us")]
        )
        for suffix in (v.suffix for v in VARIANTS)
    }
    tunings = re.findall(r"^tuning(?:-[\w-]+)? .*$", bench, re.M)
    floor = re.search(r"launch floor: ([\d.]+) us", bench)
    barrier = re.search(r"^grid barrier: (.*)$", bench, re.M)
    barrier_fences = re.search(r"^grid barrier \(fences\): (.*)$", bench, re.M)
    persistent_not = re.findall(r"^dynofa-cuda-(persistent[\w-]*): not measured: (.*)$", bench, re.M)
    persistent_traces = re.findall(r"^persistent-trace(?:-fences)? .*$", bench, re.M)
    # infer's halves: {suffix ('' for the default engine): {name: (stage us, run us)}}.
    parts = {}
    for m in re.finditer(r"dynofa-cuda-parts(-[\w-]+)? (\w+) stage_us=([\d.]+) run_us=([\d.]+)", bench):
        parts.setdefault((m.group(1) or "")[1:], {})[m.group(2)] = (m.group(3), m.group(4))
    programmatic = re.search(r"programmatic dependent launch: (.*)", bench)

    # The runtime manager on the GPU: the built-in demo, shortened (its target steps, and a stream
    # running the largest sub-network part-way), with the LUT's GPU front timed here at start-up.
    run_cmd = [os.path.join(staged, "dynofa"), "run", "--backend", "cuda", "--duration-s", "10",
               "--trace", os.path.join(out_dir, "run-cuda.csv"), "--plot", os.path.join(out_dir, "run-cuda.svg")]
    rc_run, run_out = run(run_cmd, env=env, timeout=180)
    keep("run-cuda.txt", run_out)
    managed = re.findall(r"^(?:sub-networks: .*|  \S+: \d+ frames, deadlines met .*)$", run_out, re.M)

    # Decoded images through both engines (the repository's 8 fixture images, the w1.0 fixture
    # LUT's sub-networks, the supernet's BN): the same top-1 and top-5 counts?
    fixtures = os.path.join(REPO, "kernels", "tests", "fixtures")
    counts = {}
    for backend in ["cpu", "cuda"]:
        path = os.path.join(out_dir, f"eval-{backend}.json")
        run([os.path.join(staged, "dynofa"), "eval", "--backend", backend, "--images", os.path.join(fixtures, "images"),
             "--labels", os.path.join(fixtures, "labels.json"), "--lut", os.path.join(fixtures, "eval", "lut.json"),
             "--json", path], env=env, timeout=180)
        try:
            with open(path) as f:
                counts[backend] = [(c["correct1"], c["correct5"]) for c in json.load(f)["subnets"]]
        except (OSError, ValueError, KeyError) as e:
            log(f"eval --backend {backend}: no results ({e})")

    tmp = tempfile.mkdtemp(prefix="dynofa-gpu-check-")
    weights = os.path.join(tmp, "w12.safetensors")
    run([os.path.join(staged, "dynofa"), "gen-weights", "--width", "1.2", "--out", weights], timeout=120)
    torch_ms = {}
    for mode in [m for m in args.modes.split(",") if m]:
        cmd = [sys.executable, os.path.abspath(__file__), "peer", "--mode", mode, "--weights", weights]
        cmd += ["--reps", str(args.reps), "--warmup", str(args.warmup)]
        if wheels:
            cmd += ["--wheel", wheels[0]]
        _, out = run(cmd, timeout=args.peer_timeout)
        keep(f"torch-{mode}.txt", out)
        for m in re.finditer(r"torch-(\w+) (\w+) median_ms=([\d.]+)", out):
            torch_ms[(m.group(1), m.group(2))] = float(m.group(3))
    shutil.rmtree(tmp, ignore_errors=True)

    lines = []
    say = lines.append
    say("")
    if switch:
        bar = "yes" if float(switch.group(1)) <= 5.0 else "NO"
        say(f"switch (activate between captured graphs, host): median {switch.group(1)} us, "
            f"p99 {switch.group(2)} us, max {switch.group(3)} us; median <= 5 us: {bar}")
    say(f"correctness + allocation-free (gpu-test): {verdict}")
    say(f"HAL conformance suite, Linux platform, CPU and CUDA engines (conformance): {suite}")
    say(f"dynofa platform: {' '.join(cuda_line.split())}")
    say(f"SM clock during gpu-test and gpu-bench: {clock}")
    say("")
    say(f"## dynofa CUDA vs PyTorch, batch 1, fp32, w1.2, seeded weights ({gpu})")
    say("")
    say("| sub-network | dynofa cuda ms | its kernels alone ms | " + " | ".join(f"torch {m} ms" for m in MODES)
        + " | best torch / dynofa | >= 5x |")
    say("|---|---|---|" + "---|" * len(MODES) + "---|---|")
    for which in NAMED:
        t = [torch_ms.get((m, which)) for m in MODES]
        best = min([v for v in t if v is not None], default=None)
        cells = " | ".join(f"{v:.3f}" if v is not None else "n/a" for v in t)
        # The default engine, then the one that measured each layer's alternatives and the
        # persistent kernel, where they ran.
        for label, d, us in [(which, dynofa.get(which), kernels.get(which))] + [
                (f"{which} ({suffix})", variants[suffix][0].get(which), variants[suffix][1].get(which))
                for suffix in (v.suffix for v in VARIANTS if v.row)]:
            if d is None and label != which:
                continue
            ratio = f"{best / d:.2f}x" if best and d else "n/a"
            bar = ("yes" if best / d >= 5.0 else "NO") if best and d else "n/a"
            alone = f"{us / 1e3:.3f}" if us is not None else "n/a"
            say(f"| {label} | {f'{d:.3f}' if d else 'n/a'} | {alone} | {cells} | {ratio} | {bar} |")
    if programmatic:
        say("")
        say(f"programmatic dependent launch in dynofa's graphs: {programmatic.group(1)}")
    if plain:
        say("without it (ms): " + ", ".join(f"{w} {plain[w]:.3f}" for w in NAMED if w in plain))
    for suffix, label in LABELS.items():
        ms, us = variants[suffix]
        if ms:
            say(f"{label} (ms{'; kernels alone' if us else ''}): " + ", ".join(
                f"{w} {ms[w]:.3f} ({us[w] / 1e3:.3f})" if w in us else f"{w} {ms[w]:.3f}" for w in NAMED if w in ms))
    for line in verdicts(dynofa, {suffix: ms for suffix, (ms, _) in variants.items()}):
        say(line)
    for line in tunings:
        say(line)
    if floor:
        say(f"a graph node that does nothing: {floor.group(1)} us")
    if barrier:
        say(f"a barrier across the GPU (one block per multiprocessor: what the persistent kernel pays between "
            f"launches): {barrier.group(1)}")
    if barrier_fences:
        say(f"the same ordered by fences rather than release/acquire atomics: {barrier_fences.group(1)}")
    for suffix, why in persistent_not:
        say(f"dynofa-cuda-{suffix}: not measured: {why}")
    for line in persistent_traces:
        say(line)
    plans = read_plans(launches)
    for line in kernel_wins(plans) + fused_wins(plans) + tuned_picks(plans) + time_shares(plans):
        say(line)
    for line in bar_budgets(dynofa, kernels, torch_ms, plans, float(floor.group(1)) if floor else None):
        say(line)
    if args.baseline:
        for line in against_baseline(plans, read_plans(args.baseline), os.path.relpath(args.baseline, REPO)):
            say(line)
    for suffix, halves in parts.items():
        which = f" ({LABELS.get(suffix, suffix)})" if suffix else ""
        say(f"dynofa's infer in halves{which}, host copy into page-locked input + graph replay and wait (us): "
            + ", ".join(f"{w} {halves[w][0]} + {halves[w][1]}" for w in NAMED if w in halves))
    if len(counts) == 2:
        same = "yes" if counts["cpu"] == counts["cuda"] else "NO"
        say(f"dynofa eval on the fixture images, (top-1, top-5) counts per sub-network: cpu {counts['cpu']}, "
            f"cuda {counts['cuda']}; the same: {same}")
    else:
        say(f"dynofa eval on the fixture images: results from {', '.join(counts) or 'neither engine'} only")
    say(f"dynofa run --backend cuda (the demo, 10 s): exit {rc_run}" + ("" if managed else ", no summary"))
    for line in managed:
        say("  " + line.strip())
    print("\n".join(lines))
    if args.save:
        keep("summary.md", "\n".join(lines) + "\n")
        saved = sorted(os.listdir(args.save))
        log(f"saved {', '.join(saved)} in {args.save}")
    return 0 if verdict == "ok" and suite.startswith("ok") else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    c = sub.add_parser("check", help="the whole check (default when the first argument is a folder)")
    c.add_argument("staged", help="the folder staged by `cargo xtask gpu-check`")
    c.add_argument("--runs", type=int, default=1000, help="timed dynofa inferences per sub-network")
    c.add_argument("--reps", type=int, default=300, help="timed PyTorch calls per sub-network")
    c.add_argument("--warmup", type=int, default=30)
    c.add_argument("--modes", default=",".join(MODES), help="PyTorch modes to time ('' for none)")
    c.add_argument("--peer-timeout", type=int, default=300)
    c.add_argument("--save", help="a folder for summary.md, gpu-bench.txt and launches.csv (each launch's "
                   "plan estimate and measured GPU time), e.g. the device tool's $OUT")
    c.add_argument("--baseline", default=os.path.join(REPO, "docs", "data", "gpu-launches-h200.csv"),
                   help="an earlier run's launches.csv: the launches both timed, then against now "
                        "(default: the eleventh session's H200 run; '' for none)")
    q = sub.add_parser("peer", help="one PyTorch process")
    q.add_argument("--mode", choices=MODES, required=True)
    q.add_argument("--weights", required=True)
    q.add_argument("--wheel")
    q.add_argument("--which", default="max,mid,min")
    q.add_argument("--device", default="cuda")
    q.add_argument("--reps", type=int, default=300)
    q.add_argument("--warmup", type=int, default=30)
    argv = sys.argv[1:]
    if argv and argv[0] not in ("check", "peer", "-h", "--help"):
        argv = ["check"] + argv
    args = p.parse_args(argv)
    if args.cmd == "peer":
        return cmd_peer(args)
    if args.cmd == "check":
        return cmd_check(args)
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main() or 0)
