"""Test-time augmentation keeps the overlap-tile guarantee: tiled == one pass, with TTA too."""

import numpy as np
import pytest
import torch

from napari_unet import normalization as norm
from napari_unet.axes import Planes
from napari_unet.config import ModelConfig, PredictConfig
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict, run
from napari_unet.tiling import dihedral_average


def one_pass_tta(model: UNetModel, image: np.ndarray) -> np.ndarray:
    """Reference: the 8 flips/rotations of the whole mirror-extended image, each through the
    network in one pass, mapped back and averaged."""
    g = model.geometry
    h, w = image.shape
    m = g.valid_margin
    sizes = [g.tile_input(int(np.ceil(n / g.step)) * g.step, m) for n in (h, w)]
    ext = np.pad(image, ((m, sizes[0] - h - m), (m, sizes[1] - w - m)), mode="reflect")
    lo, hi = norm.percentiles(Planes(image, "YX"), model.normalization)
    x = torch.from_numpy(norm.apply(ext[None], lo, hi))[None]
    net = model.network.eval()
    with torch.no_grad():
        p = dihedral_average(lambda t: torch.softmax(net(t), 1), x)[0].numpy()
    return p[:, :h, :w]


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(1)
    return UNetModel.create(ModelConfig(depth=2, base_width=8, classes=3))


@pytest.mark.parametrize("shape,tile", [((48, 48), 64), ((37, 53), 16), ((60, 45), 24)])
def test_tiled_tta_equals_one_pass_tta(paper_model, nuclei, shape, tile):
    image = nuclei[0][: shape[0], : shape[1]]
    tiled = run(predict(paper_model, image, "YX", PredictConfig(tile=tile, tta=True), probabilities=True))
    ref = one_pass_tta(paper_model, image)
    assert np.abs(tiled.probabilities - ref).max() < 1e-5
    plain = run(predict(paper_model, image, "YX", PredictConfig(tile=tile), probabilities=True))
    assert np.abs(plain.probabilities - ref).max() > 1e-3  # TTA really changed something


def test_dihedral_average_of_an_equivariant_function_is_the_function():
    x = torch.randn(2, 1, 12, 10)
    np.testing.assert_allclose(dihedral_average(lambda t: t * 2 + 1, x), x * 2 + 1, atol=1e-6)


def test_tta_with_sigmoid_outputs_of_a_padded_network(nuclei):
    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=8, classes=2, mode="instance",
                                         instance_targets="distance"), halo=16)
    image = nuclei[0][:64, :64]
    out = run(predict(model, image, "YX", PredictConfig(tile=32, tta=True), probabilities=True))
    assert out.probabilities.shape == (2, 64, 64)
    assert out.probabilities.min() >= 0 and out.probabilities.max() <= 1
    assert not np.allclose(out.probabilities.sum(0), 1)  # sigmoid per channel, not a softmax
