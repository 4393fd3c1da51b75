"""Percentile normalisation when the percentiles say nothing (sparse signal, flat images)."""

import warnings

import numpy as np
import pytest

from napari_unet import normalization as norm
from napari_unet.axes import Planes
from napari_unet.config import Normalization


def sparse_fluorescence(shape=(256, 256), spots=40, seed=0):
    """Background of exactly 100 with a few bright spots: fewer than 0.2 % of the pixels
    are signal, so the 1st and 99.8th percentiles are both the background value."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, 100, np.uint16)
    image.flat[rng.choice(image.size, spots, replace=False)] = rng.integers(1000, 4000, spots)
    return image


def test_equal_percentiles_fall_back_to_min_and_max():
    image = sparse_fluorescence()
    planes = Planes(image, "YX")
    assert np.percentile(image, 1) == np.percentile(image, 99.8) == 100  # the premise
    with pytest.warns(norm.NormalizationWarning, match=r"percentiles are both 100.*minimum and maximum \(100 \.\. \d+\)"):
        lo, hi = norm.percentiles(planes, Normalization())
    assert lo[0] == 100 and hi[0] == image.max()
    x = norm.apply(image[None], lo, hi)
    assert x.min() == 0 and x.max() == 1  # before: (4000 - 100) / 1e-6, about 4e9
    assert np.isfinite(x.astype(np.float16)).all()  # representable even in float16


def test_flat_image_gets_a_scale_of_one():
    image = np.full((64, 64), 7.5, np.float32)
    with pytest.warns(norm.NormalizationWarning, match="flat.*every pixel is 7.5.*scale of 1"):
        lo, hi = norm.percentiles(Planes(image, "YX"), Normalization())
    assert lo[0] == 7.5 and hi[0] == 8.5
    np.testing.assert_array_equal(norm.apply(image[None], lo, hi), 0)


def test_only_the_degenerate_channel_changes_and_is_named(nuclei):
    image = np.stack([nuclei[0], sparse_fluorescence(nuclei[0].shape)])
    planes = Planes(image, "CYX")
    with pytest.warns(norm.NormalizationWarning, match="^channel 1 of the image") as record:
        lo, hi = norm.percentiles(planes, Normalization())
    assert len(record) == 1
    assert lo[0] == np.float32(np.percentile(nuclei[0], 1)) and hi[0] == np.float32(np.percentile(nuclei[0], 99.8))
    assert (lo[1], hi[1]) == (100, image[1].max())


def test_ordinary_images_are_normalised_silently(nuclei):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = norm.percentiles(Planes(nuclei[0], "YX"), Normalization())
    assert hi[0] - lo[0] > 10


def test_prediction_of_a_sparse_image_is_finite_and_warns():
    import torch

    from napari_unet.config import ModelConfig, PredictConfig
    from napari_unet.modelfile import UNetModel
    from napari_unet.predict import predict, run

    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(depth=2, base_width=4))
    image = sparse_fluorescence((64, 64), spots=5)
    with pytest.warns(norm.NormalizationWarning):
        result = run(predict(model, image, "YX", PredictConfig(device="cpu"), probabilities=True))
    assert np.isfinite(result.probabilities).all()


def brightfield_like(nuclei_image: np.ndarray) -> np.ndarray:
    """A real DSB2018 fluorescence image turned into dark nuclei on a bright background."""
    return (255 - nuclei_image).astype(np.uint8)


def test_auto_polarity_inverts_a_bright_background_only(nuclei):
    dark = nuclei[0]
    bright = brightfield_like(dark)
    kept = bright.copy()
    for image in (dark, bright):
        lo, hi = norm.percentiles(Planes(image, "YX"), Normalization())
        as_is = norm.apply(image[None], lo, hi)
        lo_a, hi_a = norm.percentiles(Planes(image, "YX"), Normalization(polarity="auto"))
        auto = norm.apply(image[None], lo_a, hi_a)
        assert auto.dtype == np.float32
        if image is dark:
            np.testing.assert_array_equal(auto, as_is)  # a dark background is left alone
        else:
            np.testing.assert_allclose(auto, 1 - as_is, atol=1e-6)  # low maps to 1, high to 0
            assert np.median(auto) < 0.5 < np.median(as_is)
    np.testing.assert_array_equal(bright, kept)  # the user's image is untouched


def test_auto_polarity_is_decided_per_channel(nuclei):
    image = np.stack([nuclei[0], brightfield_like(nuclei[0])])
    lo, hi = norm.percentiles(Planes(image, "CYX"), Normalization(polarity="auto"))
    assert lo[0] < hi[0] and lo[1] > hi[1]
    lo_s, hi_s = norm.percentiles(Planes(image, "CYX"), Normalization())
    x, as_is = norm.apply(image, lo, hi), norm.apply(image, lo_s, hi_s)
    np.testing.assert_array_equal(x[0], as_is[0])
    np.testing.assert_allclose(x[1], 1 - as_is[1], atol=1e-6)
    assert np.median(x[0]) < 0.5 and np.median(x[1]) < 0.5  # both channels now show bright nuclei


def test_unknown_polarity_is_refused():
    from napari_unet.config import ConfigError

    with pytest.raises(ConfigError, match="unknown polarity 'invert'.*as-is, auto"):
        Normalization(polarity="invert")


def test_auto_polarity_prediction_sees_the_inverted_image_and_tiles_exactly(nuclei):
    """Prediction of a bright-background image with ``polarity="auto"`` is the prediction of
    its intensity mirror image (which has a dark background) by the same network without it,
    and tiled prediction still equals one pass (the inversion is decided once per image)."""
    import torch

    from napari_unet.config import ModelConfig, PredictConfig
    from napari_unet.modelfile import UNetModel
    from napari_unet.predict import predict, run

    torch.manual_seed(0)
    # symmetric percentiles: the mirror image lo + hi - x has the same two percentiles
    auto = UNetModel.create(ModelConfig(depth=2, base_width=4, classes=3), Normalization(1, 99, "auto"))
    as_is = UNetModel.create(ModelConfig(depth=2, base_width=4, classes=3), Normalization(1, 99))
    as_is.network.load_state_dict(auto.network.state_dict())
    bright = brightfield_like(nuclei[0]).astype(np.float32)
    lo, hi = np.percentile(bright, (1, 99))
    mirrored = (lo + hi - bright).astype(np.float32)
    one = run(predict(auto, bright, "YX", PredictConfig(tile=256), probabilities=True)).probabilities
    tiled = run(predict(auto, bright, "YX", PredictConfig(tile=48), probabilities=True)).probabilities
    reference = run(predict(as_is, mirrored, "YX", PredictConfig(tile=256), probabilities=True)).probabilities
    assert np.abs(tiled - one).max() < 1e-5
    assert np.abs(one - reference).max() < 1e-4
    plain = run(predict(as_is, bright, "YX", PredictConfig(tile=256), probabilities=True)).probabilities
    assert np.abs(plain - one).max() > 1e-2  # without it, the network sees another image
