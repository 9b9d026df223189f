#!/usr/bin/env bash
# Regenerates kernels/goldens/logits.safetensors (reference logits of the `ofa` package on dynofa's
# seeded weights, see collect.py); with --check, fails when the committed file is stale.
# Needs scripts/ref/.venv (scripts/ref/setup-venv.sh); CI only compares against the committed file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/ref/lib.sh"
for w in 1.0 1.2; do
  "$dynofa" gen-weights --width "$w" --out "$tmp/w$w.safetensors"
done
"$py" kernels/goldens/collect.py --weights-dir "$tmp" "$@"
