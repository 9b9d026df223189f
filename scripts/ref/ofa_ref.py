#!/usr/bin/env python3
"""Reference tooling for dynofa: golden outputs and baseline latencies from the `ofa` package.

Run with scripts/ref/.venv/bin/python (see setup-venv.sh). Subcommands:

  golden          reference logits for sub-network configs (safetensors + cases.json manifest)
  bench           batch-1 median latency of max/mid/min sub-networks (ort, torch, torch-inplace,
                  torch-switch); last stdout line is `median_ms=<v>` (`median_us=<v>` for torch-switch)
  random-weights  a seeded random supernet state dict (same names/layout as real checkpoints)
  stats           parameters and MACs of static sub-networks (ofa's count_parameters/count_net_flops)
  preprocess      OFA's evaluation transform (torchvision) of the images of an ImageFolder
  calibrate-bn    OFA's set_running_statistics for one sub-network over images of an ImageFolder
  eval            per-image top-5 of sub-networks over an ImageFolder
  write-checkpoint  weights as a torch checkpoint like OFA's released ones (zip or legacy format)

Input scheme of `golden` (also stored in every golden file as tensor `input`):
  numpy.random.default_rng(seed).standard_normal((1, 3, r, r), dtype=numpy.float32)
"""

import argparse
import copy
import json
import os
import re
import statistics
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

import numpy as np
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

KS_LIST = [3, 5, 7]
E_LIST = [3, 4, 6]
D_LIST = [2, 3, 4]
N_BLOCKS = 20  # elastic blocks (blocks.1 .. blocks.20)
N_UNITS = 5

INPUT_SCHEME = "numpy.random.default_rng(seed).standard_normal((1, 3, r, r), dtype=numpy.float32)"

NAMED_CONFIGS = {
    "max": {"ks": 7, "e": 6, "d": 4, "r": 224},
    "mid": {"ks": 5, "e": 4, "d": 3, "r": 192},
    "min": {"ks": 3, "e": 3, "d": 2, "r": 160},
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def versions():
    import importlib.metadata as md

    out = {}
    for p in ["torch", "ofa", "numpy", "safetensors", "onnx", "onnxruntime"]:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


# ----------------------------------------------------------------------------------------------
# model construction and weights


def build_supernet(width):
    net = OFAMobileNetV3(
        n_classes=1000,
        bn_param=(0.1, 1e-5),
        dropout_rate=0.0,
        width_mult=width,
        ks_list=KS_LIST,
        expand_ratio_list=E_LIST,
        depth_list=D_LIST,
    )
    net.eval()
    return net


def width_from_first_conv(channels):
    widths = {16: 1.0, 24: 1.2}
    if channels not in widths:
        raise SystemExit(f"cannot detect width: first_conv has {channels} output channels")
    return widths[channels]


def load_supernet(weights_path):
    """Build the supernet matching the file's shapes and load it strictly.

    Every key of the model must be in the file with the same shape, except `*.num_batches_tracked`
    (unused at inference), which may be absent. No extra keys are allowed. The legacy name
    component `.mobile_inverted_conv.` (old OFA checkpoints) is accepted for `.conv.`.
    """
    sd = np_load_file(weights_path)
    sd = {k.replace(".mobile_inverted_conv.", ".conv."): v for k, v in sd.items()}
    if "first_conv.conv.weight" not in sd:
        raise SystemExit(f"{weights_path}: no first_conv.conv.weight")
    width = width_from_first_conv(sd["first_conv.conv.weight"].shape[0])
    net = build_supernet(width)
    model_sd = net.state_dict()
    extra = sorted(set(sd) - set(model_sd))
    missing = sorted(k for k in set(model_sd) - set(sd) if not k.endswith(".num_batches_tracked"))
    if extra or missing:
        raise SystemExit(f"{weights_path}: state-dict mismatch\n  unexpected: {extra}\n  missing: {missing}")
    new_sd = {}
    for k, ref in model_sd.items():
        if k not in sd:
            new_sd[k] = ref  # num_batches_tracked
            continue
        v = torch.from_numpy(np.array(sd[k], copy=True))
        if tuple(v.shape) != tuple(ref.shape):
            raise SystemExit(f"{weights_path}: {k} has shape {tuple(v.shape)}, expected {tuple(ref.shape)}")
        new_sd[k] = v.to(ref.dtype)
    # nn.Module.load_state_dict (not OFAMobileNetV3's override, which silently keeps missing keys)
    torch.nn.Module.load_state_dict(net, new_sd, strict=True)
    net.eval()
    return net, width


def apply_bn_overrides(net, bn_path):
    """Override BN running statistics from `bn_path`.

    Keys are supernet state-dict names ending in `.running_mean` or `.running_var`, e.g.
    `blocks.5.conv.depth_conv.bn.bn.running_var` or `first_conv.bn.running_mean`. A tensor may be
    shorter than the supernet's (per-sub-network stats cover the active channels only): it then
    replaces the first len entries.
    """
    stats = np_load_file(bn_path)
    sd = net.state_dict(keep_vars=True)
    for k, v in stats.items():
        if not (k.endswith(".running_mean") or k.endswith(".running_var")):
            raise SystemExit(f"{bn_path}: {k}: only running_mean/running_var may be overridden")
        if k not in sd:
            raise SystemExit(f"{bn_path}: {k}: no such BN buffer in the supernet")
        buf = sd[k]
        v = torch.from_numpy(np.array(v, copy=True)).to(buf.dtype).reshape(-1)
        if v.numel() > buf.numel():
            raise SystemExit(f"{bn_path}: {k}: {v.numel()} entries > {buf.numel()}")
        with torch.no_grad():
            buf[: v.numel()].copy_(v)
    return len(stats)


BODY_GAIN = 1.5
HEAD_GAIN = 6.0


def random_state_dict(width, seed):
    """Seeded random weights that keep activations O(1) for every sub-network.

    BN running stats are random and do not normalise, so conv gains are set by hand:
    weights ~ N(0, g/fan_in) with g = BODY_GAIN for first_conv and blocks, HEAD_GAIN for
    final_expand_layer, feature_mix_layer and classifier; elastic 7x7 depthwise kernels have a
    radial profile (variance g * 0.7 in total in the centre 3x3, g * 0.2 in the 5x5 ring, g * 0.1
    in the 7x7 ring) so k = 3, 5, 7 give similar gains; elastic point_linear fan-in is taken at
    e = 4 (2/3 of the stored mid). BN weight ~ U(0.8, 1.25), except
    point_linear of residual blocks ~ U(0.3, 0.6); BN bias, running_mean, SE/classifier bias
    ~ N(0, 0.1); running_var ~ U(0.5, 2); 7to5/5to3 matrices = identity + N(0, 0.05)
    (deliberately not identity).
    """
    rng = np.random.default_rng(seed)
    net = build_supernet(width)
    residual = {f"blocks.{i}." for i, b in enumerate(net.blocks) if b.shortcut is not None}
    out = {}
    for k, t in net.state_dict().items():
        shape = tuple(t.shape)
        if k.endswith("num_batches_tracked"):
            out[k] = np.array(0, dtype=np.int64)
            continue
        if k.endswith("_matrix"):
            v = np.eye(shape[0]) + rng.normal(0.0, 0.05, shape)
        elif k.endswith("bn.weight"):
            res_pl = ".point_linear." in k and any(k.startswith(p) for p in residual)
            lo, hi = (0.3, 0.6) if res_pl else (0.8, 1.25)
            v = rng.uniform(lo, hi, shape)
        elif k.endswith("bn.bias") or k.endswith("running_mean") or k.endswith(".bias"):
            v = rng.normal(0.0, 0.1, shape)
        elif k.endswith("running_var"):
            v = rng.uniform(0.5, 2.0, shape)
        elif k.endswith("weight") and len(shape) == 4 and shape[1] == 1 and shape[2] == 7:
            std = np.full((7, 7), np.sqrt(0.1 / 24))
            std[1:6, 1:6] = np.sqrt(0.2 / 16)
            std[2:5, 2:5] = np.sqrt(0.7 / 9)
            v = rng.normal(0.0, 1.0, shape) * std * np.sqrt(BODY_GAIN)
        elif k.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            if ".point_linear." in k and k.startswith("blocks.") and not k.startswith("blocks.0."):
                fan_in = fan_in * 4 // 6
            gain = BODY_GAIN if k.startswith(("first_conv", "blocks.")) else HEAD_GAIN
            v = rng.normal(0.0, np.sqrt(gain / fan_in), shape)
        else:
            raise SystemExit(f"random-weights: unhandled key {k}")
        out[k] = np.ascontiguousarray(v, dtype=np.float32)
    return out


# ----------------------------------------------------------------------------------------------
# configs


def normalize_config(cfg):
    def expand(v, n, name, allowed):
        if isinstance(v, (int, float)):
            v = [int(v)] * n
        v = [int(x) for x in v]
        if len(v) != n:
            raise SystemExit(f"config {name}: expected {n} values, got {len(v)}")
        bad = [x for x in v if x not in allowed]
        if bad:
            raise SystemExit(f"config {name}: values {bad} not in {allowed}")
        return v

    r = cfg["r"]
    if isinstance(r, list):
        if len(r) != 1:
            raise SystemExit(f"config r: expected one value, got {r}")
        r = r[0]
    return {
        "ks": expand(cfg["ks"], N_BLOCKS, "ks", KS_LIST),
        "e": expand(cfg["e"], N_BLOCKS, "e", E_LIST),
        "d": expand(cfg["d"], N_UNITS, "d", D_LIST),
        "r": int(r),
    }


def set_subnet(net, cfg):
    net.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])


SPLITMIX_SCHEME = "splitmix64: element i (flat NCHW) = (splitmix64_at(seed, i) >> 40) / 2**24 * 4 - 2"


def make_input(seed, r, scheme="normal"):
    if scheme == "splitmix64":
        return splitmix_input(seed, r)
    return np.random.default_rng(seed).standard_normal((1, 3, r, r), dtype=np.float32)


def splitmix_input(seed, r):
    """Uniform [-2, 2) from SplitMix64 by index; dynofa_kernels::rng::golden_input computes the same."""
    i = np.arange(1, 3 * r * r + 1, dtype=np.uint64)
    z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)  # uint64 arrays wrap around
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return (u * 4.0 - 2.0).astype(np.float32).reshape(1, 3, r, r)


# ----------------------------------------------------------------------------------------------
# golden


def collect_intermediates(net, x):
    """Outputs of first_conv, every executed block, final_expand_layer, pool, feature_mix_layer."""
    acts = {}
    hooks = []

    def hook(name):
        def fn(_m, _i, o):
            acts[name] = o.detach().float().numpy().copy()

        return fn

    hooks.append(net.first_conv.register_forward_hook(hook("first_conv")))
    for i, b in enumerate(net.blocks):
        hooks.append(b.register_forward_hook(hook(f"blocks.{i}")))
    hooks.append(net.final_expand_layer.register_forward_hook(hook("final_expand_layer")))
    hooks.append(net.feature_mix_layer.register_forward_hook(hook("feature_mix_layer")))
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return acts


def cmd_golden(args):
    torch.set_num_threads(args.threads)
    net, width = load_supernet(args.weights)
    if args.bn:
        n = apply_bn_overrides(net, args.bn)
        log(f"applied {n} BN overrides from {args.bn}")
    with open(args.cases) as f:
        cases = json.load(f)
    if isinstance(cases, dict):
        cases = cases["cases"]
    cases_dir = os.path.dirname(os.path.abspath(args.cases))
    os.makedirs(args.out, exist_ok=True)
    manifest = {
        "width": width,
        "weights": os.path.basename(args.weights),
        "input_scheme": SPLITMIX_SCHEME if args.input_scheme == "splitmix64" else INPUT_SCHEME,
        "versions": versions(),
        "cases": [],
    }
    for case in cases:
        name = case["name"]
        cfg = normalize_config(case["config"])
        seed = int(case["seed"])
        case_net = net
        bn_file = case.get("bn")
        if bn_file:
            case_net = copy.deepcopy(net)
            apply_bn_overrides(case_net, os.path.join(cases_dir, bn_file))
        set_subnet(case_net, cfg)
        x = make_input(seed, cfg["r"], args.input_scheme)
        xt = torch.from_numpy(x)
        # float64 copy of the same weights (the exact-math reference)
        net64 = copy.deepcopy(case_net).double()
        # extracted static sub-network must agree with the in-place supernet
        static = case_net.get_active_subnet(preserve_weight=True).eval()
        with torch.inference_mode():
            y32 = case_net(xt).numpy().astype(np.float32)
            y64 = net64(xt.double()).numpy()
            ys = static(xt).numpy()
        del net64, static
        err32 = float(np.max(np.abs(y32.astype(np.float64) - y64)))
        err_static = float(np.max(np.abs(ys - y32)))
        tensors = {"input": x, "logits": y32, "logits_f64": y64.astype(np.float64)}
        np_save_file(tensors, os.path.join(args.out, f"{name}.safetensors"))
        if args.intermediates:
            acts = collect_intermediates(case_net, xt)
            np_save_file(acts, os.path.join(args.out, f"{name}.intermediates.safetensors"))
        entry = {
            "name": name,
            "file": f"{name}.safetensors",
            "width": width,
            "config": cfg,
            "seed": seed,
            "bn": bn_file or (os.path.basename(args.bn) if args.bn else None),
            "max_abs_logits": float(np.max(np.abs(y32))),
            "max_abs_err_f32_vs_f64": err32,
            "max_abs_diff_static_vs_inplace": err_static,
            "top5": [int(i) for i in np.argsort(-y64[0])[:5]],
        }
        manifest["cases"].append(entry)
        log(
            f"{name}: r={cfg['r']} max|logits|={entry['max_abs_logits']:.4f} "
            f"f32-vs-f64={err32:.3e} static-vs-inplace={err_static:.3e}"
        )
    text = json.dumps(manifest, indent=1)
    # keep number lists (configs, top5) on one line
    text = re.sub(r"\[\s*([-\d.,\s]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        f.write(text + "\n")


# ----------------------------------------------------------------------------------------------
# bench


def median_time(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t0)
    return statistics.median(ts)


def export_onnx(model, x, path):
    kw = dict(
        opset_version=17,
        do_constant_folding=True,
        input_names=["input"],
        output_names=["logits"],
    )
    try:
        torch.onnx.export(model, (x,), path, dynamo=False, **kw)
    except TypeError:  # very old torch without the dynamo argument
        torch.onnx.export(model, (x,), path, **kw)


def cmd_bench(args):
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    net, width = load_supernet(args.weights)
    cfg = normalize_config(NAMED_CONFIGS[args.which])
    r = cfg["r"]
    x = torch.from_numpy(make_input(0, r))
    warmup = args.warmup if args.warmup is not None else max(5, args.reps // 10)
    log(f"bench engine={args.engine} which={args.which} width={width} r={r} threads={args.threads} reps={args.reps}")

    if args.engine == "torch-switch":
        other = normalize_config(NAMED_CONFIGS["min" if args.which == "max" else "max"])
        ts = []
        for i in range(warmup + args.reps):
            set_subnet(net, other)
            t0 = time.perf_counter_ns()
            set_subnet(net, cfg)
            dt = time.perf_counter_ns() - t0
            if i >= warmup:
                ts.append(dt)
        print(f"median_us={statistics.median(ts) / 1e3:.3f}")
        return

    set_subnet(net, cfg)
    if args.engine == "torch-inplace":
        model = net
    else:
        model = net.get_active_subnet(preserve_weight=True).eval()

    if args.engine in ("torch", "torch-inplace"):
        with torch.inference_mode():
            ns = median_time(lambda: model(x), args.reps, warmup)
    elif args.engine == "ort":
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "subnet.onnx")
            with torch.no_grad():
                export_onnx(model, x, path)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        xin = {"input": x.numpy()}
        with torch.inference_mode():
            ref = model(x).numpy()
        got = sess.run(None, xin)[0]
        log(f"ort vs torch max abs diff: {np.max(np.abs(got - ref)):.3e}")
        ns = median_time(lambda: sess.run(None, xin), args.reps, warmup)
    else:
        raise SystemExit(f"unknown engine {args.engine}")
    print(f"median_ms={ns / 1e6:.3f}")


# ----------------------------------------------------------------------------------------------
# random-weights, stats


def cmd_random_weights(args):
    sd = random_state_dict(args.width, args.seed)
    np_save_file(sd, args.out)
    log(f"wrote {len(sd)} tensors (w={args.width}, seed={args.seed}) to {args.out}")


def cmd_stats(args):
    from ofa.utils import count_parameters
    from ofa.utils.pytorch_utils import count_net_flops

    rows = []
    if args.ks is not None:
        rows.append((args.width, {"ks": args.ks, "e": args.e, "d": args.d, "r": args.r}))
    else:
        for w in (1.0, 1.2):
            for name in ("max", "mid", "min"):
                rows.append((w, NAMED_CONFIGS[name]))
            rows.append((w, {"ks": 3, "e": 3, "d": 2, "r": 128}))
    nets = {}
    for w, c in rows:
        if w not in nets:
            nets[w] = build_supernet(w)
        net = nets[w]
        cfg = normalize_config(c)
        set_subnet(net, cfg)
        sub = net.get_active_subnet(preserve_weight=False)
        params = count_parameters(sub)
        macs = count_net_flops(sub, (1, 3, cfg["r"], cfg["r"]))
        print(
            f"w={w} ks={c['ks']} e={c['e']} d={c['d']} r={cfg['r']} "
            f"params={params} macs={macs / 1e6:.3f}M"
        )


# ----------------------------------------------------------------------------------------------
# images: OFA's evaluation preprocessing, BN re-calibration and evaluation (dynofa's
# calibrate-bn / eval reference), torch checkpoints (dynofa's import-ofa reference)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def eval_transform(r, to_tensor=True):
    """OFA's evaluation transform (ofa/tutorial/imagenet_eval_helper.py `validate`); without
    to_tensor it stops at the cropped PIL image."""
    import math

    from torchvision import transforms

    steps = [transforms.Resize(int(math.ceil(r / 0.875))), transforms.CenterCrop(r)]
    if to_tensor:
        steps += [transforms.ToTensor(), transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)]
    return transforms.Compose(steps)


def image_folder(root, transform=None):
    from torchvision import datasets

    return datasets.ImageFolder(root, transform)


def splitmix_order(n, seed):
    """dynofa_kernels::dataset::seeded_subset: Fisher-Yates driven by SplitMix64(seed)."""
    mask = (1 << 64) - 1
    state = seed & mask
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        j = z % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def cmd_preprocess(args):
    """Each image of an ImageFolder through OFA's evaluation transform at resolution r."""
    ds = image_folder(args.images)
    tensors = {}
    for path, _ in ds.samples:
        rel = os.path.relpath(path, args.images)
        if args.files and rel not in args.files:
            continue
        img = ds.loader(path)
        if args.uint8:
            tensors[f"{rel}@{args.r}"] = np.ascontiguousarray(np.asarray(eval_transform(args.r, False)(img)))
        else:
            tensors[f"{rel}@{args.r}"] = eval_transform(args.r)(img).numpy()
    np_save_file(tensors, args.out)
    log(f"wrote {len(tensors)} images at r={args.r} to {args.out}")


def calibrate_bn(net, cfg, images, count, batch, seed):
    """OFA's set_running_statistics for one sub-network on the supernet in place, over `count`
    images of an ImageFolder chosen and ordered by splitmix_order, with the evaluation transform.
    Returns {"<BN layer>.running_mean"/".running_var": array} at the active widths."""
    from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

    set_subnet(net, cfg)
    ds = image_folder(images, eval_transform(cfg["r"]))
    order = splitmix_order(len(ds), seed)[:count]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, order), batch_size=batch, shuffle=False)
    # set_running_statistics works on a deep copy, which keeps these hooks: they record the
    # width each BN layer sees (layers that do not run record nothing).
    widths = {}
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(lambda _m, inp, name=name: widths.__setitem__(name, inp[0].shape[1])))
    try:
        set_running_statistics(net, loader)
    finally:
        for h in hooks:
            h.remove()
    modules = dict(net.named_modules())
    out = {}
    for name, m in net.named_modules():
        if name in widths:
            w = widths[name]
            out[f"{name}.running_mean"] = modules[name].running_mean[:w].detach().numpy().astype(np.float32).copy()
            out[f"{name}.running_var"] = modules[name].running_var[:w].detach().numpy().astype(np.float32).copy()
    return out, len(order)


def cmd_calibrate_bn(args):
    torch.set_num_threads(args.threads)
    net, width = load_supernet(args.weights)
    with open(args.config) as f:
        cfg = normalize_config(json.load(f))
    stats, n = calibrate_bn(net, cfg, args.images, args.count, args.batch, args.seed)
    meta = {"source": f"ofa set_running_statistics over {n} images of {args.images}, batch {args.batch}, seed {args.seed}"}
    np_save_file(stats, args.out, metadata=meta)
    log(f"wrote {len(stats) // 2} BN layers ({n} images, w{width}) to {args.out}")


def cmd_eval(args):
    """Top-5 of every image of an ImageFolder for each case of a JSON list
    [{"name", "config", "bn": file or null}] (bn relative to the list)."""
    torch.set_num_threads(args.threads)
    net, width = load_supernet(args.weights)
    with open(args.cases) as f:
        cases = json.load(f)
    cases_dir = os.path.dirname(os.path.abspath(args.cases))
    result = {"width": width, "versions": versions(), "cases": []}
    for case in cases:
        cfg = normalize_config(case["config"])
        case_net = copy.deepcopy(net)
        if case.get("bn"):
            apply_bn_overrides(case_net, os.path.join(cases_dir, case["bn"]))
        set_subnet(case_net, cfg)
        ds = image_folder(args.images, eval_transform(cfg["r"]))
        images = []
        with torch.inference_mode():
            for i, (path, target) in enumerate(ds.samples):
                y = case_net(ds[i][0][None])[0].double().numpy()
                order = np.argsort(-y, kind="stable")
                images.append({
                    "file": os.path.relpath(path, args.images),
                    "class": ds.classes[target],
                    "top5": [int(k) for k in order[:5]],
                    # gaps at the top-1 and top-5 boundaries: how robust each prediction is
                    "margin1": float(y[order[0]] - y[order[1]]),
                    "margin5": float(y[order[4]] - y[order[5]]),
                })
        result["cases"].append({"name": case["name"], "config": cfg, "bn": case.get("bn"), "images": images})
        log(f"{case['name']}: {len(images)} images")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


def cmd_write_checkpoint(args):
    """The supernet's state_dict() (module metadata included) saved as OFA's released checkpoints
    are: torch.save({"state_dict": sd}); optionally in the legacy stream format and with the
    legacy `.mobile_inverted_conv.` names."""
    import collections

    net, width = load_supernet(args.weights)
    sd = net.state_dict()
    if args.legacy_names:
        renamed = collections.OrderedDict(
            (re.sub(r"^(blocks\.\d+)\.conv\.", r"\1.mobile_inverted_conv.", k), v) for k, v in sd.items()
        )
        renamed._metadata = sd._metadata
        sd = renamed
    torch.save({"state_dict": sd}, args.out, _use_new_zipfile_serialization=not args.legacy_format)
    log(f"wrote {len(sd)} tensors (w{width}) to {args.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("golden", help="reference logits for configs")
    g.add_argument("--weights", required=True)
    g.add_argument("--cases", required=True, help='JSON list of {"name","config","seed"[,"bn"]}')
    g.add_argument("--out", required=True)
    g.add_argument("--bn", help="BN running-stat overrides (safetensors) applied to all cases")
    g.add_argument("--intermediates", action="store_true", help="also write <name>.intermediates.safetensors")
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--input-scheme", choices=["normal", "splitmix64"], default="normal",
                   help="splitmix64: inputs that dynofa recomputes from the seed, so goldens need not store them")
    g.set_defaults(fn=cmd_golden)

    b = sub.add_parser("bench", help="batch-1 median latency")
    b.add_argument("--weights", required=True)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--which", choices=sorted(NAMED_CONFIGS), required=True)
    b.add_argument("--engine", choices=["ort", "torch", "torch-inplace", "torch-switch"], required=True)
    b.add_argument("--reps", type=int, default=50)
    b.add_argument("--warmup", type=int, default=None, help="default max(5, reps/10)")
    b.set_defaults(fn=cmd_bench)

    r = sub.add_parser("random-weights", help="seeded random supernet weights")
    r.add_argument("--width", type=float, choices=[1.0, 1.2], required=True)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--out", required=True)
    r.set_defaults(fn=cmd_random_weights)

    s = sub.add_parser("stats", help="params and MACs of static sub-networks (no weights needed)")
    s.add_argument("--width", type=float, choices=[1.0, 1.2], default=1.2)
    s.add_argument("--ks", type=int)
    s.add_argument("--e", type=int)
    s.add_argument("--d", type=int)
    s.add_argument("--r", type=int)
    s.set_defaults(fn=cmd_stats)

    pp = sub.add_parser("preprocess", help="OFA's evaluation transform of every image of an ImageFolder")
    pp.add_argument("--images", required=True)
    pp.add_argument("--r", type=int, required=True)
    pp.add_argument("--out", required=True, help="safetensors; tensors named <relative path>@<r>")
    pp.add_argument("--files", nargs="*", help="only these relative paths")
    pp.add_argument("--uint8", action="store_true", help="the cropped image [r, r, 3] before ToTensor/Normalize")
    pp.set_defaults(fn=cmd_preprocess)

    cb = sub.add_parser("calibrate-bn", help="OFA's set_running_statistics for one sub-network")
    cb.add_argument("--weights", required=True)
    cb.add_argument("--config", required=True)
    cb.add_argument("--images", required=True)
    cb.add_argument("--count", type=int, default=2000)
    cb.add_argument("--batch", type=int, default=200)
    cb.add_argument("--seed", type=int, default=0)
    cb.add_argument("--out", required=True)
    cb.add_argument("--threads", type=int, default=2)
    cb.set_defaults(fn=cmd_calibrate_bn)

    ev = sub.add_parser("eval", help="top-5 of every image for each sub-network of a case list")
    ev.add_argument("--weights", required=True)
    ev.add_argument("--cases", required=True, help='JSON list of {"name", "config", "bn"}')
    ev.add_argument("--images", required=True)
    ev.add_argument("--out", required=True)
    ev.add_argument("--threads", type=int, default=2)
    ev.set_defaults(fn=cmd_eval)

    wc = sub.add_parser("write-checkpoint", help="the weights as a torch checkpoint like OFA's released ones")
    wc.add_argument("--weights", required=True)
    wc.add_argument("--out", required=True)
    wc.add_argument("--legacy-format", action="store_true", help="torch < 1.6's stream format")
    wc.add_argument("--legacy-names", action="store_true", help="blocks.N.mobile_inverted_conv.* keys")
    wc.set_defaults(fn=cmd_write_checkpoint)

    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
