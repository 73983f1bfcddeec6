"""Enhance stage with a real (tiny) ONNX super-resolution model through ONNX Runtime.

The generator is a 1x1 convolution that copies each channel 16 times followed by
DepthToSpace(4): an exact x4 nearest-neighbour upscale, the sub-pixel layout real SR
networks (ESPCN, Real-ESRGAN heads) end with. Because its output is known, the tests can
check the whole path (fit to the input size, normalise, run, de-normalise, colour handling,
chroma merge) pixel for pixel.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.runtime import create_engine
from pipeline.config import EnhanceConfig
from pipeline.enhance import Enhancer, bicubic_upscale
from pipeline.errors import ModelError

pytest.importorskip("onnx", reason="onnx is needed to build the test SR model")
from tests.helpers.tiny_sr import (
    INPUT_PX,
    OUTPUT_PX,
    SCALE,
    build_sr_onnx,
    write_sr_manifest,
)

BAND = (12.0, 40.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sr_models")
    gray = build_sr_onnx(d / "nn_x4_gray.onnx", channels=1)
    # gain 0 on model channel 0 blanks red for an "rgb" manifest and blue for a "bgr" one
    colour = build_sr_onnx(d / "nn_x4_colour.onnx", channels=3, gains=(0.0, 1.0, 1.0))
    return {
        "gray": write_sr_manifest(gray, d / "nn_x4_gray.json"),
        "rgb": write_sr_manifest(colour, d / "nn_x4_rgb.json", color="rgb", mean=0.0, std=1.0),
        "bgr": write_sr_manifest(colour, d / "nn_x4_bgr.json", color="bgr", mean=0.0, std=1.0),
        "wrong_scale": write_sr_manifest(gray, d / "nn_x4_says_x2.json", scale_factor=2),
        "emotion": write_sr_manifest(gray, d / "not_sr.json", task="emotion"),
    }


def random_crop(rng: np.random.Generator, size_px: int) -> np.ndarray:
    return rng.integers(0, 256, (size_px, size_px, 3), dtype=np.uint8)


def nearest_x4(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(image, SCALE, axis=0), SCALE, axis=1)


def expected_luma_sr(crop_bgr: np.ndarray) -> np.ndarray:
    """Nearest-neighbour x4 of the luminance (fitted to the model input), bicubic chroma."""
    ycrcb = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2YCrCb)
    h = crop_bgr.shape[0]
    interp = cv2.INTER_AREA if h > INPUT_PX else cv2.INTER_CUBIC
    luma = ycrcb[:, :, 0]
    if h != INPUT_PX:
        luma = cv2.resize(luma, (INPUT_PX, INPUT_PX), interpolation=interp)
    chroma = cv2.resize(ycrcb[:, :, 1:], (OUTPUT_PX, OUTPUT_PX), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(np.dstack([nearest_x4(luma), chroma]), cv2.COLOR_YCrCb2BGR)


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.uint8 and actual.shape == expected.shape
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"expected within 1 grey level, got max difference {diff.max()}"


def sr_enhancer(manifest: Path, size_px: int = OUTPUT_PX) -> Enhancer:
    cfg = EnhanceConfig(method="sr", sr_model=manifest, sr_size_band_px=BAND)
    return Enhancer(cfg, size_px=size_px)


def test_in_band_faces_get_luminance_sr_and_others_bicubic(models: dict[str, Path]) -> None:
    rng = np.random.default_rng(0)
    crops = [random_crop(rng, 16), random_crop(rng, 16), random_crop(rng, 24),
             random_crop(rng, 10), random_crop(rng, 48)]
    sizes = [20.0, 8.0, 30.0, 12.0, 50.0]  # in, below, in (shrunk to fit), in (enlarged), above
    enhancer = sr_enhancer(models["gray"])
    enhancer.start()
    try:
        out = enhancer.process(crops, sizes)
    finally:
        enhancer.stop()

    assert [face.sr_applied for face in out] == [True, False, True, True, False]
    for i in (0, 2, 3):
        assert_close(out[i].image_bgr, expected_luma_sr(crops[i]))
    for i in (1, 4):
        assert out[i].image_bgr.shape == (OUTPUT_PX, OUTPUT_PX, 3)
        np.testing.assert_array_equal(out[i].image_bgr, bicubic_upscale(crops[i], OUTPUT_PX))
    np.testing.assert_array_equal(
        out[1].image_bgr,
        cv2.resize(crops[1], (OUTPUT_PX, OUTPUT_PX), interpolation=cv2.INTER_CUBIC))
    # the SR path really differs from bicubic, so the equalities above are not vacuous
    bicubic = bicubic_upscale(crops[0], OUTPUT_PX).astype(np.int16)
    assert np.abs(out[0].image_bgr.astype(np.int16) - bicubic).mean() > 5


def test_sr_output_is_resized_to_the_crop_size(models: dict[str, Path]) -> None:
    crop = random_crop(np.random.default_rng(1), 16)
    enhancer = sr_enhancer(models["gray"], size_px=48)
    enhancer.start()
    (face,) = enhancer.process([crop], [16.0])
    enhancer.stop()
    assert face.sr_applied
    expected = cv2.resize(expected_luma_sr(crop), (48, 48), interpolation=cv2.INTER_AREA)
    assert_close(face.image_bgr, expected)


@pytest.mark.parametrize(("color", "blank_bgr_index"), [("rgb", 2), ("bgr", 0)])
def test_colour_models_follow_the_manifest_channel_order(
        models: dict[str, Path], color: str, blank_bgr_index: int) -> None:
    from engines.sr_io import super_resolve

    crop = random_crop(np.random.default_rng(2), 16)
    with create_engine(models[color]) as engine:
        (restored,) = super_resolve(engine, [crop])
    expected = nearest_x4(crop)
    expected[:, :, blank_bgr_index] = 0  # the model zeroes its own channel 0
    np.testing.assert_array_equal(restored, expected)


def test_super_resolve_batches_and_handles_empty_input(models: dict[str, Path]) -> None:
    from engines.sr_io import super_resolve

    rng = np.random.default_rng(3)
    crops = [random_crop(rng, 16) for _ in range(5)]
    with create_engine(models["gray"]) as engine:
        assert super_resolve(engine, []) == []
        restored = super_resolve(engine, crops, max_batch_size=2)
        with pytest.raises(ValueError, match=r"expected shape \(H, W, 3\) BGR, got \(16, 16\)"):
            super_resolve(engine, [crops[0][:, :, 0]])
    assert len(restored) == 5
    for crop, image in zip(crops, restored, strict=True):
        assert_close(image, expected_luma_sr(crop))


def test_wrong_output_size_is_refused(models: dict[str, Path]) -> None:
    from engines.sr_io import super_resolve

    with create_engine(models["wrong_scale"]) as engine, pytest.raises(
            ModelError, match=r"expected shape \(1, 1, 32, 32\).*got \(1, 1, 64, 64\)"):
        super_resolve(engine, [random_crop(np.random.default_rng(4), 16)])
    enhancer = sr_enhancer(models["wrong_scale"])
    with pytest.raises(ModelError, match=r"enhance\.sr_model: .*nn_x4_gray\.onnx.*expected"):
        enhancer.start()


def test_emotion_model_as_sr_model_is_refused(models: dict[str, Path]) -> None:
    from engines.sr_io import super_resolve

    enhancer = sr_enhancer(models["emotion"])
    with pytest.raises(ModelError) as info:
        enhancer.start()
    message = str(info.value)
    assert "enhance.sr_model" in message and str(models["emotion"]) in message
    assert "task: expected 'sr', got 'emotion'" in message
    with create_engine(models["emotion"]) as engine, pytest.raises(
            ModelError, match="task: expected 'sr', got 'emotion'"):
        super_resolve(engine, [random_crop(np.random.default_rng(5), 16)])


def test_missing_sr_model_fails_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model.json"
    with pytest.raises(ModelError, match=r"enhance\.sr_model: .*no_such_model\.json"):
        sr_enhancer(missing).start()


def test_sr_method_without_start_refuses_to_process(models: dict[str, Path]) -> None:
    enhancer = sr_enhancer(models["gray"])
    crop = random_crop(np.random.default_rng(6), 16)
    with pytest.raises(ModelError, match=r"start\(\)"):
        enhancer.process([crop], [20.0])
    # out-of-band faces never need the model
    assert enhancer.process([crop], [100.0])[0].sr_applied is False


def test_stop_releases_the_model_and_is_idempotent(models: dict[str, Path]) -> None:
    enhancer = sr_enhancer(models["gray"])
    enhancer.start()
    enhancer.stop()
    enhancer.stop()
    with pytest.raises(ModelError, match=r"start\(\)"):
        enhancer.process([random_crop(np.random.default_rng(7), 16)], [20.0])


def test_bicubic_enhancer_never_loads_a_model(models: dict[str, Path], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    crops = [random_crop(np.random.default_rng(8), 16)]
    for sr_model in (tmp_path / "no_such_model.json", models["emotion"], models["gray"]):
        cfg = EnhanceConfig(method="bicubic", sr_model=sr_model, sr_size_band_px=BAND)
        enhancer = Enhancer(cfg, size_px=OUTPUT_PX)
        with caplog.at_level(logging.INFO, logger="pipeline.enhance"):
            enhancer.start()  # would raise for the missing and the emotion manifest
        (face,) = enhancer.process(crops, [20.0])
        enhancer.stop()
        assert face.sr_applied is False
        np.testing.assert_array_equal(face.image_bgr, bicubic_upscale(crops[0], OUTPUT_PX))
    assert "SR model" not in caplog.text


def test_face_sizes_must_match_crops(models: dict[str, Path]) -> None:
    enhancer = Enhancer(EnhanceConfig(), size_px=OUTPUT_PX)
    with pytest.raises(ValueError, match="expected one face size per crop"):
        enhancer.process([random_crop(np.random.default_rng(9), 16)], [])


def test_camera_enhance_override_runs_each_camera_through_its_own_generator(
        models: dict[str, Path]) -> None:
    """One stage serves cameras with different enhance sections; equal sections share one
    enhancer (one engine), and the classifier sees each camera's own restoration."""
    from pipeline.analyze import CropRequest
    from pipeline.classify import EmotionStage
    from pipeline.config import ClassifyConfig

    sr = EnhanceConfig(method="sr", sr_model=models["gray"], sr_size_band_px=BAND)
    stage = EmotionStage(ClassifyConfig(), EnhanceConfig(method="bicubic"), 48,
                         camera_enhance={"cam-sr-a": sr, "cam-sr-b": sr})
    assert len(stage._enhancers) == 2  # the default and one shared SR enhancer
    rng = np.random.default_rng(3)
    requests = [CropRequest(cam, i, 1, 40.0 * i, 0.0, (0, 0, 20, 20), 20.0, 0.9,
                            random_crop(rng, 20))
                for i, cam in enumerate(["cam-plain", "cam-sr-a", "cam-sr-b", "cam-plain"])]
    stage.start()
    try:
        enhanced = stage._enhance(requests)
    finally:
        stage.stop()
    assert [e.sr_applied for e in enhanced] == [False, True, True, False]
    for request, face in zip(requests, enhanced, strict=True):
        if not face.sr_applied:
            np.testing.assert_array_equal(face.image_bgr,
                                          bicubic_upscale(request.crop_lr_bgr, 48))
