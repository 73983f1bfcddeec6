#!/usr/bin/env bash
# The prepared GPU check of issue 16 (benchmarks/gpu_check.py): one command, under 8 minutes.
#
#   bash benchmarks/gpu_check.sh --out DIR [--device cuda:0|cpu] [--quick] [...]
#
# On a machine without a package registry, what the pipeline needs beyond that machine's
# image travels in .gpu_bundle/ (made here by benchmarks/gpu_bundle.sh): site.tar.xz is
# unpacked into a private folder put first on PYTHONPATH, and data/ (the 1080p clip, the YuNet
# model) serves as CCTV_SHARED/data. Python: $PYTHON, else .venv/bin/python, else python3.
# The whole run is capped at 470 s; the check budgets itself 420 s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
BUNDLE=.gpu_bundle
# only where the packages are missing (the bundle is built for CPython 3.12)
if [ -f "$BUNDLE/site.tar.xz" ] && ! "$PY" -c 'import av, pydantic, redis' 2>/dev/null; then
    SITE=$(mktemp -d /tmp/gpu-check-site.XXXXXX)
    "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
        "$BUNDLE/site.tar.xz" "$SITE"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d "$BUNDLE/data" ] && [ -z "${CCTV_SHARED:-}" ] && [ ! -d ../shared/data ]; then
    CCTV_SHARED="$(pwd)/$BUNDLE"
    export CCTV_SHARED
fi
export PYTHONUNBUFFERED=1
exec timeout --kill-after=10 470 "$PY" benchmarks/gpu_check.py "$@"
