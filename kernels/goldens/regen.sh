#!/usr/bin/env bash
# Regenerates kernels/goldens/logits.safetensors (reference logits of the `ofa` package on dynofa's
# seeded weights, see collect.py); with --check, fails when the committed file is stale.
# Needs scripts/ref/.venv (scripts/ref/setup-venv.sh); CI only compares against the committed file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="$root/scripts/ref/.venv/bin/python"
[ -x "$py" ] || { echo "regen.sh: needs $py (run scripts/ref/setup-venv.sh)" >&2; exit 1; }
cd "$root"
cargo build --release -p dynofa-hal-jetson --bin dynofa
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for w in 1.0 1.2; do
  target/release/dynofa gen-weights --width "$w" --out "$tmp/w$w.safetensors"
done
"$py" kernels/goldens/collect.py --weights-dir "$tmp" "$@"
