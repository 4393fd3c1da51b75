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
