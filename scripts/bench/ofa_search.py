"""OFA's Python evolutionary search over latency constraints: the baseline for `dynofa search`.

Runs `ofa.nas.search_algorithm.EvolutionFinder` (PyPI `ofa`, population 100, 500 generations by
default) once per constraint with
- accuracy: OFA's tutorial predictor (`ofa/tutorial/accuracy_predictor.py`: MLP 128-400-400-400-1
  and its `spec2feats` encoding) with the weights in data/acc_predictor.safetensors;
- latency: OFA's tutorial `LatencyEstimator.predict_network_latency_given_spec` over per-op tables
  in OFA's format (`<dir>/<r>_lookup_table.json`).
and prints the wall time of the searches (tables and weights loaded before the clock starts).

Usage (from the repository root, in the reference venv, see scripts/ref/README.md; needs tqdm and pyyaml):
    scripts/ref/.venv/bin/python scripts/bench/ofa_search.py --tables DIR --constraints 18,20,... [--seed 0]
"""

import argparse
import importlib.util
import json
import os
import random
import sys
import time

import numpy as np
import torch
from safetensors.torch import load_file

import ofa
from ofa.nas.accuracy_predictor.arch_encoder import MobileNetArchEncoder
from ofa.nas.search_algorithm import EvolutionFinder


def ofa_tutorial_module(name):
    """Load one file of ofa/tutorial without its package __init__ (that one imports the model zoo,
    which needs gdown and network access)."""
    path = os.path.join(os.path.dirname(ofa.__file__), "tutorial", name + ".py")
    spec = importlib.util.spec_from_file_location("ofa_tutorial_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TablePredictor:
    """OFA's tutorial latency estimator over Dynamic-OFA/OFA JSON per-op tables."""

    def __init__(self, tables_dir, resolutions):
        estimator = ofa_tutorial_module("latency_table").LatencyEstimator
        self.tables = {}
        for r in resolutions:
            est = estimator.__new__(estimator)  # skip its YAML download; same lookups
            with open(os.path.join(tables_dir, f"{r}_lookup_table.json")) as f:
                est.lut = json.load(f)
            self.tables[r] = est

    def get_efficiency(self, arch):
        spec = {"ks": arch["ks"], "e": arch["e"], "d": arch["d"], "r": [arch["image_size"]]}
        return self.tables[arch["image_size"]].predict_network_latency_given_spec(spec)


class AccPredictor:
    """OFA's tutorial accuracy predictor, shaped as EvolutionFinder expects (arch_encoder, predict_acc)."""

    def __init__(self, weights, resolutions):
        tutorial = ofa_tutorial_module("accuracy_predictor")
        self.spec2feats = tutorial.AccuracyPredictor.spec2feats
        self.model = torch.nn.Sequential(
            torch.nn.Linear(128, 400), torch.nn.ReLU(),
            torch.nn.Linear(400, 400), torch.nn.ReLU(),
            torch.nn.Linear(400, 400), torch.nn.ReLU(),
            torch.nn.Linear(400, 1),
        )
        self.model.load_state_dict(load_file(weights))
        self.model.eval()
        self.arch_encoder = MobileNetArchEncoder(image_size_list=list(resolutions), n_stage=5)

    @torch.no_grad()
    def predict_acc(self, archs):
        feats = torch.stack(
            [self.spec2feats(list(a["ks"]), list(a["e"]), list(a["d"]), a["image_size"]) for a in archs]
        )
        return self.model(feats).squeeze(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", required=True)
    ap.add_argument("--constraints", required=True, help="comma-separated latency constraints in ms")
    ap.add_argument("--weights", default="data/acc_predictor.safetensors")
    ap.add_argument("--resolutions", default="160,176,192,208,224")
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--generations", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    resolutions = [int(r) for r in args.resolutions.split(",")]
    constraints = [float(c) for c in args.constraints.split(",")]
    random.seed(args.seed)
    np.random.seed(args.seed)
    finder = EvolutionFinder(
        TablePredictor(args.tables, resolutions),
        AccPredictor(args.weights, resolutions),
        population_size=args.population,
        max_time_budget=args.generations,
    )
    start = time.perf_counter()
    for c in constraints:
        _, (acc, arch, lat) = finder.run_evolution_search(c, verbose=False)
        print(f"constraint {c:.3f} ms: {lat:.3f} ms, top-1 {acc * 100:.3f} %, r {arch['image_size']}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"ofa python search: {len(constraints)} constraints, population {args.population}, "
          f"{args.generations} generations, torch threads {torch.get_num_threads()}: {elapsed:.2f} s")


if __name__ == "__main__":
    main()
