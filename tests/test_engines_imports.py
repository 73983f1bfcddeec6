"""The runtime side of engines must import without torch (the pipeline runs without it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_runtime_modules_do_not_import_torch() -> None:
    code = ("import sys\n"
            "import engines.manifest, engines.preprocess, engines.runtime, engines.emotion_model\n"
            "import engines.runtime.onnx_backend, engines.runtime.torch_backend\n"
            "import engines.runtime.tensorrt_backend, engines.train.degradations\n"
            "import engines.runtime.graph, engines.runtime.onnx_torch, pipeline.detect.mtcnn\n"
            "import pipeline.detect.yunet, pipeline.batching\n"
            "heavy = sorted(m for m in ('torch', 'tensorrt') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"expected no torch/tensorrt import, got {out.stdout!r}"
