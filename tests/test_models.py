import math

import pytest
import torch

from napari_unet.config import ConfigError, ModelConfig
from napari_unet.models import PaperUNet, build_network, measure_halo, paper_geometry


def test_paper_geometry_depth4_matches_the_paper():
    g = paper_geometry(4)
    assert g.min_input == 188 and g.step == 16 and g.valid_margin == 92
    # the paper's example: 572 in, 388 out
    assert g.output_size(572) == 388
    assert g.is_valid_input(188 + 16 * 5) and not g.is_valid_input(190)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_paper_unet_output_size_matches_geometry(depth):
    net = PaperUNet(1, 2, depth=depth, base_width=4)
    g = net.geometry
    for n in (g.min_input, g.min_input + g.step, g.min_input + 3 * g.step):
        out = net(torch.zeros(1, 1, n, n + g.step))
        assert out.shape == (1, 2, g.output_size(n), g.output_size(n + g.step))


def test_paper_unet_structure_and_initialisation():
    net = PaperUNet(in_channels=2, classes=3, depth=4, base_width=64)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.padding == (0, 0) for m in convs if m.kernel_size == (3, 3))
    assert net.head.out_channels == 3 and net.down[0][0].in_channels == 2
    # 23 convolutional layers in the paper's network
    n_conv = len(convs) + sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert n_conv == 23
    w = net.down[2][2].weight  # 3x3 conv with 256 input channels
    expected = math.sqrt(2 / (256 * 9))
    assert abs(float(w.std()) - expected) / expected < 0.02
    assert float(net.down[2][2].bias.abs().max()) == 0


def test_batch_norm_option():
    net = build_network(ModelConfig(depth=2, base_width=4, batch_norm=True))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_smp_model_builds_without_download_and_respects_divisibility():
    net = build_network(ModelConfig(arch="smp", encoder="resnet18", classes=3))
    assert net.geometry.step == 32 and net.geometry.padded
    out = net.eval()(torch.zeros(1, 1, 64, 96))
    assert out.shape == (1, 3, 64, 96)


def test_unknown_encoder_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid encoders:.*resnet34"):
        ModelConfig(arch="smp", encoder="resnet35")


def test_unknown_architecture_lists_valid_ones():
    with pytest.raises(ConfigError, match="unet-paper, smp"):
        ModelConfig(arch="vnet")


def test_measure_halo_is_valid_and_bounded():
    net = build_network(ModelConfig(arch="smp", encoder="resnet18"))
    halo = measure_halo(net, 1, size=128)
    assert halo % 16 == 0 and 0 < halo <= 64
