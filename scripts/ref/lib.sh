# Sourced by kernels/goldens/regen.sh and kernels/tests/fixtures/regen.sh, which share this preamble:
# it finds the repo root and the reference venv (scripts/ref/setup-venv.sh makes it), changes to the
# root, builds the release `dynofa` and sets
#   root    the repo root
#   py      the venv's python
#   dynofa  the built binary (under $CARGO_TARGET_DIR when set, else target/)
#   tmp     a scratch folder, removed on exit
# The regen scripts pass their arguments (e.g. --check) on to their collect.py.
# The callers set -euo pipefail before sourcing.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="$root/scripts/ref/.venv/bin/python"
[ -x "$py" ] || { echo "$0: needs $py (run scripts/ref/setup-venv.sh)" >&2; exit 1; }
cd "$root"
cargo build --release -p dynofa-hal-jetson --bin dynofa
dynofa="${CARGO_TARGET_DIR:-$root/target}/release/dynofa"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
