"""Self-supervised SR pair making and the generator / discriminator shapes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="SR training needs torch")

from engines.models.discriminator import DiscriminatorConfig, MultiScaleDiscriminator  # noqa: E402
from engines.models.generator import GeneratorConfig, build_generator  # noqa: E402
from engines.models.vgg import VGG19Features  # noqa: E402
from engines.train.sr_data import (  # noqa: E402
    FaceBank,
    PairParams,
    make_pair,
    resize_bicubic_aa,
    to_hr,
)


def _face(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random gray image (no high frequencies, like a small face)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = (rng.random((6, 6)) * 255).astype(np.float32)
    return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0,
                   255).astype(np.uint8)


@pytest.mark.parametrize(("scale", "hr_size"), [(2, 32), (4, 48), (8, 64)])
def test_pair_shapes_follow_scale(scale: int, hr_size: int) -> None:
    params = PairParams(scale=scale)
    lr, hr, aug = make_pair(_face(100), hr_size, params, np.random.default_rng(1))
    assert hr.shape == (hr_size, hr_size)
    assert lr.shape == (hr_size // scale, hr_size // scale)
    assert lr.dtype == hr.dtype == np.uint8
    assert aug in params.augmentations


def test_exactly_one_augmentation_per_sample_covers_all_kinds() -> None:
    params = PairParams()
    rng = np.random.default_rng(0)
    face = _face(48)
    clean_hr = to_hr(face, 48)
    clean_lr = resize_bicubic_aa(clean_hr, (12, 12))
    seen = set()
    for _ in range(120):
        lr, hr, aug = make_pair(face, 48, params, rng)
        seen.add(aug)
        if aug.startswith("rot"):
            # rotation acts on the pair: the HR is the rotated face, the LR is its downscale
            k = int(aug[3:]) // 90
            assert np.array_equal(hr, np.rot90(clean_hr, k))
            assert np.array_equal(lr, resize_bicubic_aa(hr, (12, 12)))
        else:
            # degradations touch the input only; the ground truth stays clean
            assert np.array_equal(hr, clean_hr)
            assert not np.array_equal(lr, clean_lr)
    assert seen == set(params.augmentations)


def test_only_one_augmentation_listed_is_the_only_one_used() -> None:
    params = PairParams(augmentations=("jpeg",))
    augs = {make_pair(_face(48), 48, params, np.random.default_rng(i))[2] for i in range(10)}
    assert augs == {"jpeg"}


def test_facebank_never_upsamples_ground_truth() -> None:
    bank = FaceBank([_face(48, 1), _face(30, 2), _face(140, 3)], hr_sizes=(32, 48, 128))
    assert {s: len(i) for s, i in bank.by_size.items()} == {32: 2, 48: 2, 128: 1}
    rng = np.random.default_rng(0)
    for _ in range(10):
        lr, hr, size, augs = bank.sample_batch(4, PairParams(), rng)
        assert hr.shape == (4, size, size) and lr.shape == (4, size // 4, size // 4)
        assert len(augs) == 4
    with pytest.raises(ValueError, match="no face is as large"):
        FaceBank([_face(20)], hr_sizes=(48,))


def test_bicubic_antialiased_downscale_keeps_flat_and_matches_pil() -> None:
    flat = np.full((64, 64), 77, np.uint8)
    assert np.array_equal(resize_bicubic_aa(flat, (16, 16)), np.full((16, 16), 77, np.uint8))
    image_mod = pytest.importorskip("PIL.Image")
    face = _face(96, 5)
    ours = resize_bicubic_aa(face, (24, 24)).astype(int)
    pil = np.asarray(image_mod.fromarray(face).resize((24, 24), image_mod.BICUBIC)).astype(int)
    assert np.abs(ours - pil).max() <= 1


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_generator_scales_and_starts_as_bicubic(scale: int) -> None:
    ups = {2: (16,), 4: (16, 8), 8: (16, 8, 8)}[scale]
    gen = build_generator(GeneratorConfig(scale=scale, base_width=16, encoder_widths=(16,),
                                          bottleneck_blocks=1, up_widths=ups)).eval()
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        y = gen(x)
    assert y.shape == (2, 1, 12 * scale, 12 * scale)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic")
    assert torch.allclose(y, bicubic)  # zero-initialised residual head
    with pytest.raises(ValueError, match="up_widths"):
        GeneratorConfig.from_dict({"scale": 8, "up_widths": [16, 8]})


def test_discriminator_judges_several_scales() -> None:
    disc = MultiScaleDiscriminator(DiscriminatorConfig(scales=3))
    outs = disc(torch.rand(2, 1, 64, 64))
    assert [o.shape[-1] for o in outs] == [8, 4, 2]


def test_vgg19_loads_a_torchvision_state_dict(tmp_path) -> None:
    net = VGG19Features(layers=("relu1_2", "relu2_2"))
    # a torchvision-style file: features.N.* keys plus classifier keys that must be ignored
    state = {f"features.{k}": torch.randn_like(v) for k, v in net.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "vgg19.pth")
    net.load_torchvision_state(tmp_path / "vgg19.pth")
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    feats = net(torch.rand(1, 1, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128]
    del state["features.2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"features\.2\.weight"):
        net.load_torchvision_state(tmp_path / "broken.pth")
