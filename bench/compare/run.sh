#!/usr/bin/env bash
# melgraph against PyTorch in one command (bench/compare/compare.py: parity first, then the
# training step, the mel front end and the fused loss, timed side by side):
#
#   bench/compare/run.sh [--device cpu|cuda] [--threads N] [compare.py options...]
#
# Uses the build in $MELGRAPH_BUILD_DIR (default build/: scripts/build makes it) and the first
# python that imports torch and torchaudio: $MELGRAPH_PYTHON, /usr/bin/python3 (Debian's
# torch 1.13), then python3 on PATH (a PyTorch 2.x install on a GPU machine).
# Examples:
#   bench/compare/run.sh --threads 2 --repeat 3              # the CPU numbers of docs/performance.md
#   bench/compare/run.sh --device cuda                       # on a GPU machine
#   bench/compare/run.sh --config tests/data/small_model.toml --parity-only
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${MELGRAPH_BUILD_DIR:-$repo/build}
[[ $build = /* ]] || build=$repo/$build
melgraph=$build/apps/melgraph
helper=$build/bench/compare_helper
for f in "$melgraph" "$helper"; do
  [[ -x $f ]] || {
    echo "run.sh: error: $f not built (run scripts/build, or set MELGRAPH_BUILD_DIR)" >&2
    exit 1
  }
done
py=
for c in ${MELGRAPH_PYTHON:+"$MELGRAPH_PYTHON"} /usr/bin/python3 python3; do
  # shellcheck disable=SC2086 # MELGRAPH_PYTHON may be a command with arguments
  if command -v ${c%% *} >/dev/null 2>&1 && $c -c 'import torch, torchaudio, numpy' >/dev/null 2>&1; then
    py=$c
    break
  fi
done
[[ -n $py ]] || {
  echo "run.sh: error: no python with torch, torchaudio and numpy (install python3-torch python3-torchaudio" \
    "python3-numpy, or set MELGRAPH_PYTHON)" >&2
  exit 1
}
# shellcheck disable=SC2086
exec $py "$repo/bench/compare/compare.py" --melgraph "$melgraph" --helper "$helper" "$@"
