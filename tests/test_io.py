"""TIFF outputs other tools read correctly: grayscale pages (never RGB), ImageJ hyperstack
axes, the input's pixel size; files with the user's usual permissions."""

import os
import stat

import numpy as np
import pytest
import tifffile

from napari_unet.io import PixelSize, read_pixel_size, tiff_memmap, write_tiff


def describe(path):
    """(series axes, shape, photometric, samples per pixel, ImageJ metadata, XResolution,
    ResolutionUnit) of a TIFF, as another program sees it."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        series = tif.series[0]
        return {
            "axes": series.axes,
            "shape": series.shape,
            "photometric": page.photometric,
            "samples": page.samplesperpixel,
            "imagej": tif.imagej_metadata or {},
            "xres": page.tags["XResolution"].value,
            "yres": page.tags["YResolution"].value,
            "unit": page.tags["ResolutionUnit"].value,
            "data": series.asarray(),
        }


@pytest.fixture
def imagej_stack(tmp_path):
    """A Z stack saved by ImageJ: 0.5 x 0.25 um pixels, planes 2 um apart."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 20, 30), np.uint16), imagej=True, resolution=(2.0, 4.0),
                     metadata={"unit": "um", "spacing": 2.0, "axes": "ZYX"})
    return path


def test_pixel_size_from_imagej_metadata(imagej_stack):
    assert read_pixel_size(imagej_stack) == PixelSize(x=0.5, y=0.25, unit="micron", z=2.0)


def test_pixel_size_from_resolution_tags(tmp_path):
    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), resolution=(1000.0, 500.0), resolutionunit="CENTIMETER")
    assert read_pixel_size(path) == PixelSize(x=0.001, y=0.002, unit="cm")


def test_no_pixel_size_when_the_file_has_none(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))  # resolution 1/1, no unit
    assert read_pixel_size(tmp_path / "plain.tif") is None
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    assert read_pixel_size(tmp_path / "broken.tif") is None


def test_probabilities_of_a_2d_image_are_channels_not_rgb(tmp_path, imagej_stack):
    size = read_pixel_size(imagej_stack)
    with tiff_memmap(tmp_path / "p.tif", (3, 20, 30), "float32", axes="CYX", pixel_size=size) as out:
        out[1] = 0.5
    d = describe(tmp_path / "p.tif")
    assert d["photometric"] == tifffile.PHOTOMETRIC.MINISBLACK and d["samples"] == 1
    assert d["axes"] == "CYX" and d["shape"] == (3, 20, 30)
    assert d["imagej"]["channels"] == 3 and d["imagej"]["unit"] == "micron"
    assert d["xres"] == (2, 1) and d["yres"] == (4, 1)
    assert d["data"][1].min() == 0.5 and d["data"][0].max() == 0


def test_three_channel_float_is_never_rgb_even_without_axes(tmp_path):
    """What tifffile does by default for (3, H, W): RGB with separate planes."""
    with tiff_memmap(tmp_path / "m.tif", (3, 20, 30), "float32"):
        pass
    write_tiff(tmp_path / "w.tif", np.zeros((3, 20, 30), np.float32))
    for name in ("m.tif", "w.tif"):
        d = describe(tmp_path / name)
        assert d["photometric"] == tifffile.PHOTOMETRIC.MINISBLACK and d["samples"] == 1
        assert d["shape"] == (3, 20, 30)


def test_labels_of_a_z_stack_keep_pixel_size_and_spacing(tmp_path, imagej_stack):
    size = read_pixel_size(imagej_stack)
    with tiff_memmap(tmp_path / "labels.tif", (3, 20, 30), np.int32, axes="ZYX", pixel_size=size) as out:
        out[2, 5, 5] = 70000  # int32 ids: beyond what ImageJ's 16-bit type holds
    d = describe(tmp_path / "labels.tif")
    assert d["axes"] == "ZYX" and d["photometric"] == tifffile.PHOTOMETRIC.MINISBLACK
    assert d["imagej"]["slices"] == 3 and d["imagej"]["spacing"] == 2.0
    assert d["data"].dtype == np.int32 and d["data"][2, 5, 5] == 70000
    assert read_pixel_size(tmp_path / "labels.tif") == size  # Fiji shows the input's calibration


def test_time_series_labels(tmp_path):
    write_tiff(tmp_path / "t.tif", np.ones((4, 20, 30), np.uint8), axes="TYX")
    d = describe(tmp_path / "t.tif")
    assert d["axes"] == "TYX" and d["imagej"]["frames"] == 4 and d["photometric"] == tifffile.PHOTOMETRIC.MINISBLACK


def test_probabilities_of_a_stack_are_stored_in_imagej_order(tmp_path, imagej_stack):
    """ImageJ's hyperstacks are TZCYX: class-first probabilities (CZYX) of a Z stack are
    stored as ZCYX; the array handed to the caller still has the caller's axes."""
    size = read_pixel_size(imagej_stack)
    with tiff_memmap(tmp_path / "p.tif", (2, 3, 20, 30), "float32", axes="CZYX", pixel_size=size) as out:
        assert out.shape == (2, 3, 20, 30)
        out[1, 2] = 1.0  # class 1, plane 2
    d = describe(tmp_path / "p.tif")
    assert d["axes"] == "ZCYX" and d["shape"] == (3, 2, 20, 30)
    assert d["imagej"]["channels"] == 2 and d["imagej"]["slices"] == 3
    assert d["data"][2, 1].min() == 1.0 and d["data"].sum() == 20 * 30
    write_tiff(tmp_path / "w.tif", np.moveaxis(d["data"], 1, 0), axes="CZYX", pixel_size=size)
    np.testing.assert_array_equal(describe(tmp_path / "w.tif")["data"], d["data"])


def test_axes_imagej_cannot_describe_are_kept_by_tifffile(tmp_path):
    write_tiff(tmp_path / "q.tif", np.zeros((2, 8, 8), np.uint8), axes="QYX",
               pixel_size=PixelSize(x=0.5, y=0.5, unit="micron"))
    d = describe(tmp_path / "q.tif")
    assert d["axes"] == "QYX" and d["photometric"] == tifffile.PHOTOMETRIC.MINISBLACK
    assert d["unit"] == tifffile.RESUNIT.CENTIMETER and d["xres"] == (20000, 1)  # 0.5 um


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyError), tiff_memmap(tmp_path / "x.tif", (8, 8), "uint8", axes="YX"):
        raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_get_the_users_usual_mode(tmp_path, umask, mode):
    """mkstemp makes 0600 files, and the rename into place keeps that mode."""
    old = os.umask(umask)
    try:
        write_tiff(tmp_path / "w.tif", np.zeros((8, 8), np.uint8))
        with tiff_memmap(tmp_path / "m.tif", (8, 8), "uint8"):
            pass
    finally:
        os.umask(old)
    for name in ("w.tif", "m.tif"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_cli_predict_outputs_carry_axes_and_pixel_size(tmp_path):
    """End to end: a calibrated input gives calibrated label and probability TIFFs that other
    tools read as a 2D label image and a 3-channel hyperstack."""
    import torch

    from napari_unet.cli import main
    from napari_unet.config import ModelConfig
    from napari_unet.modelfile import UNetModel

    torch.manual_seed(0)
    UNetModel.create(ModelConfig(depth=2, base_width=8, classes=3)).save(tmp_path / "m.safetensors")
    image = (np.random.default_rng(0).random((40, 48)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", image, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"unit": "micron"})
    assert main(["predict", str(tmp_path / "m.safetensors"), str(tmp_path / "in.tif"), "--out",
                 str(tmp_path / "out"), "--probabilities", "--device", "cpu", "--quiet"]) == 0
    labels, probs = describe(tmp_path / "out" / "in.tif"), describe(tmp_path / "out" / "in_prob.tif")
    assert labels["axes"] == "YX" and labels["shape"] == (40, 48)
    assert probs["axes"] == "CYX" and probs["shape"] == (3, 40, 48)
    assert probs["photometric"] == tifffile.PHOTOMETRIC.MINISBLACK
    for d in (labels, probs):
        assert d["xres"] == (2, 1) and d["imagej"]["unit"] == "micron"
