#!/usr/bin/env bash
# Creates scripts/ref/.venv with the Python reference tooling (torch, ofa, onnxruntime, ...).
# Idempotent: re-running only installs what is missing. Never needed by CI.
#
# Note on torch: PyPI's linux x86_64 torch wheel is the CUDA build. Installing it with --no-deps
# does NOT work: `import torch` dlopens libcublasLt/libcudart/... and fails without the nvidia-*
# wheels. So torch is installed with its dependencies (about 3 GB of downloads, ~6 GB on disk);
# only PyPI is reachable, so the CPU-only index cannot be used.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"

# Pinned versions (those validated when the goldens were produced).
TORCH=2.15.0
TORCHVISION=0.29.2
OFA=0.1.0.post202307202001

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q -U pip
fi
pip="$venv/bin/pip"

have() { "$venv/bin/python" - "$@" <<'PY'
import sys, importlib.metadata as m
for spec in sys.argv[1:]:
    name, _, ver = spec.partition("==")
    try:
        v = m.version(name)
    except m.PackageNotFoundError:
        sys.exit(1)
    if ver and v != ver:
        sys.exit(1)
PY
}

if ! have "torch==$TORCH"; then
  "$pip" install "torch==$TORCH"
fi
if ! have "torchvision==$TORCHVISION"; then
  # --no-deps: its deps (torch, numpy, pillow) are installed explicitly.
  "$pip" install --no-deps "torchvision==$TORCHVISION"
fi
if ! have numpy pillow safetensors onnx onnxruntime onnxscript; then
  "$pip" install numpy pillow safetensors onnx onnxruntime onnxscript
fi
# ofa's search and tutorial modules (scripts/bench/ofa_search.py) import tqdm and yaml.
if ! have tqdm pyyaml; then
  "$pip" install tqdm pyyaml
fi
if ! have "ofa==$OFA"; then
  # ofa's declared deps are not needed for the elastic networks (no model zoo download).
  "$pip" install --no-deps "ofa==$OFA"
fi

"$venv/bin/python" - <<'PY'
import importlib.metadata as m
for p in ["torch", "torchvision", "numpy", "pillow", "safetensors", "onnx", "onnxruntime", "onnxscript", "ofa", "tqdm", "pyyaml"]:
    print(f"{p}=={m.version(p)}")
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3  # noqa: F401
print("ok: ofa OFAMobileNetV3 importable")
PY
