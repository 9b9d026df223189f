#!/usr/bin/env python3
"""Reference logits of the `ofa` package for the cases in cases.json, on dynofa's seeded weights.

Run through regen.sh (which builds dynofa and writes the seeded weights); this script runs
scripts/ref/ofa_ref.py golden once per width with splitmix64 inputs (recomputed by the Rust test
from each case's seed, so only logits are stored) and writes logits.safetensors: one f32 [1, 1000]
tensor per case, with a `source` metadata entry saying what generated it, from what, and when.
With --check it compares instead and fails when the committed file is stale.
"""

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(ROOT, "scripts", "ref", "ofa_ref.py")
OUT = os.path.join(HERE, "logits.safetensors")
# Relative to max |logits|; torch's own run-to-run and cross-machine float32 noise is ~1e-7.
CHECK_TOL = 1e-5

# Per-sub-network BN statistics for the *_bn cases: a few layers of each kind (fixed, elastic
# expand / depthwise at the sub-network's active width, projection, final expand).
BN_FILES = {
    "bn_w12_mid.safetensors": {
        "first_conv.bn": 24,
        "blocks.0.conv.depth_conv.bn": 24,
        "blocks.5.conv.point_linear.bn.bn": 48,
        "blocks.6.conv.depth_conv.bn.bn": 192,
        "blocks.14.conv.inverted_bottleneck.bn.bn": 544,
        "final_expand_layer.bn": 1152,
    },
    "bn_w10_mid.safetensors": {
        "first_conv.bn": 16,
        "blocks.7.conv.depth_conv.bn.bn": 160,
        "blocks.18.conv.inverted_bottleneck.bn.bn": 640,
        "blocks.18.conv.point_linear.bn.bn": 160,
    },
}


def make_bn_files():
    rng = np.random.default_rng(2021)
    for name, layers in BN_FILES.items():
        path = os.path.join(HERE, name)
        if os.path.exists(path):
            continue
        t = {}
        for layer, c in layers.items():
            t[f"{layer}.running_mean"] = rng.normal(0.0, 0.2, c).astype(np.float32)
            t[f"{layer}.running_var"] = rng.uniform(0.3, 3.0, c).astype(np.float32)
        save_file(t, path, metadata={"source": f"kernels/goldens/collect.py (numpy default_rng(2021)), {today()}"})


def today():
    return datetime.date.today().isoformat()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_goldens(weights_dir, work):
    with open(os.path.join(HERE, "cases.json")) as f:
        cases = json.load(f)
    logits, info = {}, {}
    for width in sorted({c["width"] for c in cases}):
        weights = os.path.join(weights_dir, f"w{width}.safetensors")
        sub = []
        for c in cases:
            if c["width"] == width:
                c = dict(c)
                if c.get("bn"):
                    c["bn"] = os.path.join(HERE, c["bn"])
                sub.append(c)
        cases_path = os.path.join(work, f"cases_{width}.json")
        with open(cases_path, "w") as f:
            json.dump(sub, f)
        out = os.path.join(work, f"out_{width}")
        cmd = [sys.executable, REF, "golden", "--weights", weights, "--cases", cases_path, "--out", out,
               "--input-scheme", "splitmix64"]
        subprocess.run(cmd, check=True)
        with open(os.path.join(out, "cases.json")) as f:
            manifest = json.load(f)
        info[f"w{width}"] = {"weights_sha256": sha256(weights), "versions": manifest["versions"],
                             "input_scheme": manifest["input_scheme"]}
        for entry in manifest["cases"]:
            with safe_open(os.path.join(out, entry["file"]), "np") as f:
                logits[entry["name"]] = f.get_tensor("logits").astype(np.float32)
            info[entry["name"]] = {k: entry[k] for k in ("max_abs_logits", "max_abs_err_f32_vs_f64", "top5")}
    return logits, info


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-dir", required=True, help="holds w1.0.safetensors and w1.2.safetensors from `dynofa gen-weights`")
    p.add_argument("--check", action="store_true", help="compare with the committed logits instead of writing them")
    args = p.parse_args()
    if not args.check:
        make_bn_files()
    with tempfile.TemporaryDirectory() as work:
        logits, info = run_goldens(args.weights_dir, work)
    if args.check:
        stale = []
        with safe_open(OUT, "np") as f:
            committed = set(f.keys())
            for name, y in logits.items():
                if name not in committed:
                    stale.append(f"{name}: missing")
                    continue
                old = f.get_tensor(name)
                err = float(np.max(np.abs(old - y)) / np.max(np.abs(y)))
                if err > CHECK_TOL:
                    stale.append(f"{name}: relative difference {err:.2e}")
            stale += [f"{n}: no longer a case" for n in committed - set(logits)]
        if stale:
            print("kernels/goldens/logits.safetensors is stale (run kernels/goldens/regen.sh):", file=sys.stderr)
            print("\n".join("  " + s for s in stale), file=sys.stderr)
            sys.exit(1)
        print(f"kernels/goldens/logits.safetensors is up to date ({len(logits)} cases)", file=sys.stderr)
        return
    source = (f"generated {today()} by kernels/goldens/regen.sh: scripts/ref/ofa_ref.py golden (ofa package, "
              f"float32, eval mode) on `dynofa gen-weights` seeded weights for the cases in cases.json")
    save_file(logits, OUT, metadata={"source": source, "info": json.dumps(info, sort_keys=True)})
    print(f"wrote {len(logits)} cases to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
