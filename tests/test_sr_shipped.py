"""The shipped SR artifact: manifest checks, size, and use through the enhance stage (no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.manifest import load_manifest, sha256_file
from pipeline.config import EnhanceConfig
from pipeline.enhance import Enhancer, bicubic_upscale

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "engines" / "weights" / "sr_generator.json"

pytestmark = pytest.mark.skipif(not MANIFEST.is_file(), reason=f"{MANIFEST} not built yet")


def test_manifest_describes_a_gray_x4_generator_with_its_provenance() -> None:
    m = load_manifest(MANIFEST, expect_task="sr")
    assert (m.scale_factor, m.color, m.channels) == (4, "gray", 1)
    assert m.input_size_hw == (24, 24) and m.output_name == "sr"
    assert m.architecture["kind"] == "stargan_v2_sr"
    assert m.weights_sha256 == sha256_file(m.weights_path)
    assert m.metrics["parity_max_abs_diff_unit"] <= 2e-3
    assert m.training["exported"] == "EMA generator" and m.training["seed"] is not None
    size_mb = (m.onnx_path.stat().st_size + m.weights_path.stat().st_size) / 1e6
    assert size_mb < 25


def _face_crop(size: int) -> np.ndarray:
    img = np.full((size, size, 3), 150, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 3, (90, 110, 170), -1)
    cv2.line(img, (size // 4, size // 2 - 2), (3 * size // 4, size // 2 - 2), (30, 30, 30), 1)
    return img


def test_enhance_stage_runs_the_shipped_model_in_band_only() -> None:
    enhancer = Enhancer(EnhanceConfig(method="sr", sr_model=MANIFEST,
                                      sr_size_band_px=(12.0, 32.0)), size_px=48)
    enhancer.start()
    try:
        crops = [_face_crop(s) for s in (16, 24, 30, 60)]
        out = enhancer.process(crops, [15.0, 22.0, 28.0, 55.0])
    finally:
        enhancer.stop()
    assert [o.sr_applied for o in out] == [True, True, True, False]
    for crop, o in zip(crops[:3], out[:3], strict=True):
        bic = bicubic_upscale(crop, 48).astype(np.float64)
        mse = np.mean((o.image_bgr.astype(np.float64) - bic) ** 2)
        # a restoration of the same face: close to bicubic, but not identical to it
        assert mse > 0 and 10 * np.log10(255 ** 2 / mse) > 24


def test_pipeline_path_does_not_import_torch() -> None:
    code = ("import sys\nfrom pathlib import Path\n"
            "from engines.manifest import load_manifest\n"
            "from engines.runtime import create_engine_from_manifest\n"
            "from engines.sr_io import super_resolve\nimport numpy as np\n"
            f"m = load_manifest(Path({str(MANIFEST)!r}), expect_task='sr')\n"
            "e = create_engine_from_manifest(m)\n"
            "super_resolve(e, [np.zeros((20, 20, 3), np.uint8)])\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_shipped_generator_runs_on_the_torch_backend_like_onnx() -> None:
    """backend: torch rebuilds the generator from the manifest's architecture and gives the
    ONNX Runtime output."""
    from engines.runtime import create_engine

    manifest = REPO / "engines" / "weights" / "sr_generator.json"
    if not manifest.is_file():
        pytest.skip("no shipped SR generator")
    rng = np.random.default_rng(0)
    batch = rng.random((2, 1, 24, 24), dtype=np.float32) * 2 - 1
    onnx_engine = create_engine(manifest, backend="onnxruntime")
    torch_engine = create_engine(manifest, backend="torch")
    try:
        np.testing.assert_allclose(torch_engine.infer(batch), onnx_engine.infer(batch),
                                   atol=1e-4)
    finally:
        onnx_engine.close()
        torch_engine.close()
