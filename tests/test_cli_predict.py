import shutil

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.modelfile import UNetModel


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "model.safetensors"
    assert main(["init", "--arch", "unet-paper", "--depth", "2", "--base-width", "4", "--classes", "3", "--out", str(path)]) == 0
    return path


@pytest.fixture
def images(tmp_path, data_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("dsb_243443ae303c.tif", "dsb_0c6507d493bf.tif"):
        shutil.copy(data_dir / name, folder / name)
    return folder


def test_init_then_predict_folder(model_path, images, tmp_path, capsys):
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    rc = main(["predict", str(model_path), str(images), "--out", str(out), "--tile", "60", "--probabilities", "--quiet"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "rounded to 60" not in err and "tile 60 rounded to 60" not in err
    for name in before:
        stem = name[:-4]
        labels = tifffile.imread(out / f"{stem}.tif")
        prob = tifffile.imread(out / f"{stem}_prob.tif")
        assert labels.shape == (256, 256) and labels.dtype == np.uint8
        assert prob.shape == (3, 256, 256) and prob.dtype == np.float32
        np.testing.assert_array_equal(labels, prob.argmax(0))
        np.testing.assert_allclose(prob.sum(0), 1, atol=1e-5)
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_tile_rounding_is_reported(model_path, images, tmp_path, capsys):
    assert main(["predict", str(model_path), str(images / "dsb_243443ae303c.tif"), "--out", str(tmp_path / "o"), "--tile", "50", "--quiet"]) == 0
    assert "tile 50 rounded to 52" in capsys.readouterr().err


def test_stack_with_axes(model_path, tmp_path, nuclei):
    stack = np.stack([nuclei[0][:64, :64]] * 3)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert main(["predict", str(model_path), str(tmp_path / "stack.tif"), "--out", str(tmp_path / "o"), "--axes", "ZYX", "--quiet"]) == 0
    labels = tifffile.imread(tmp_path / "o" / "stack.tif")
    assert labels.shape == (3, 64, 64)
    np.testing.assert_array_equal(labels[0], labels[2])


def error_of(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.startswith("napari-unet: error:") and "\n" not in err
    return err


def test_missing_empty_and_corrupt_tiff(model_path, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert "does not exist" in error_of(capsys, ["predict", str(model_path), str(tmp_path / "missing.tif"), "--out", out])
    (tmp_path / "empty.tif").write_bytes(b"")
    assert "empty" in error_of(capsys, ["predict", str(model_path), str(tmp_path / "empty.tif"), "--out", out])
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage" * 10)
    assert "cannot read" in error_of(capsys, ["predict", str(model_path), str(tmp_path / "bad.tif"), "--out", out])
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_wrong_channels_and_axes(model_path, tmp_path, capsys, nuclei):
    rgb = np.stack([nuclei[0][:40, :40]] * 3, axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    out = str(tmp_path / "o")
    assert "3 channel(s)" in error_of(capsys, ["predict", str(model_path), str(tmp_path / "rgb.tif"), "--out", out, "--axes", "YXC"])
    assert "name 2 axes" in error_of(capsys, ["predict", str(model_path), str(tmp_path / "rgb.tif"), "--out", out, "--axes", "YX"])


def test_nan_image(model_path, tmp_path, capsys):
    img = np.ones((40, 40), np.float32)
    img[0, 0] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", img)
    assert "NaN or infinite" in error_of(capsys, ["predict", str(model_path), str(tmp_path / "nan.tif"), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o" / "nan.tif").exists()


def test_output_over_input_is_refused(model_path, images, capsys):
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    assert "overwrite the input" in error_of(capsys, ["predict", str(model_path), str(images), "--out", str(images)])
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def test_unknown_arch_encoder_and_small_tile(tmp_path, capsys):
    assert "unet-paper, smp" in error_of(capsys, ["init", "--arch", "fcn", "--out", str(tmp_path / "m")])
    assert "valid encoders" in error_of(capsys, ["init", "--arch", "smp", "--encoder", "resnet999", "--out", str(tmp_path / "m")])
    assert "smaller than this model's minimum tile of 16" in error_of(
        capsys, ["init", "--out", str(tmp_path / "m2"), "--tile", "8"]
    )
    assert not (tmp_path / "m2").exists()


def test_tile_below_minimum_in_predict(model_path, images, tmp_path, capsys):
    err = error_of(capsys, ["predict", str(model_path), str(images), "--out", str(tmp_path / "o"), "--tile", "3"])
    assert "minimum tile of 4" in err


def test_pickled_model_file_is_refused(tmp_path, capsys, images):
    import torch

    torch.save({"a": 1}, tmp_path / "m.pt")
    assert "pickle" in error_of(capsys, ["predict", str(tmp_path / "m.pt"), str(images), "--out", str(tmp_path / "o")])


def test_cuda_requested_without_gpu(model_path, images, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    err = error_of(capsys, ["predict", str(model_path), str(images), "--out", str(tmp_path / "o"), "--device", "cuda"])
    assert "CUDA is not usable" in err and "torch" in err


def test_saved_instance_model_predicts_ids(tmp_path, nuclei):
    path = tmp_path / "inst.safetensors"
    assert main(["init", "--depth", "2", "--base-width", "4", "--mode", "instance", "--out", str(path)]) == 0
    assert UNetModel.load(path).config.classes == 3
    tifffile.imwrite(tmp_path / "img.tif", nuclei[0])
    assert main(["predict", str(path), str(tmp_path / "img.tif"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    labels = tifffile.imread(tmp_path / "o" / "img.tif")
    assert labels.dtype == np.int32 and labels.shape == (256, 256)


def test_demo_segments_the_bundled_sample_well(tmp_path, capsys):
    from napari_unet.metrics import instance_metrics
    from napari_unet.sample import SAMPLE_LABELS

    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    assert "nuclei in nuclei.tif" in capsys.readouterr().out
    labels = tifffile.imread(tmp_path / "nuclei.tif")
    truth = tifffile.imread(SAMPLE_LABELS)
    assert instance_metrics(truth, labels, (0.5,))["ap@0.5"] > 0.85  # measured 0.92


def test_instance_settings_replace_the_models_own_in_predict_and_evaluate(tmp_path, capsys):
    """--seed-threshold, --seed-dynamic, --foreground-threshold and --min-size replace the
    model's tuned post-processing, exactly as the core applies them to the probabilities;
    evaluate scores with them and says which settings its figures hold for."""
    import dataclasses
    import json

    from napari_unet.instances import PostProcessing
    from napari_unet.sample import SAMPLE_IMAGE, SAMPLE_LABELS, SAMPLE_MODEL

    for folder in ("img", "lab"):
        (tmp_path / folder).mkdir()
    tifffile.imwrite(tmp_path / "img" / "n.tif", tifffile.imread(SAMPLE_IMAGE)[:192, :256])
    tifffile.imwrite(tmp_path / "lab" / "n.tif", tifffile.imread(SAMPLE_LABELS)[:192, :256])
    base = ["predict", str(SAMPLE_MODEL), str(tmp_path / "img" / "n.tif"), "--device", "cpu", "--quiet", "--probabilities"]
    flags = ["--seed-threshold", "0.8", "--seed-dynamic", "0", "--foreground-threshold", "0.7", "--min-size", "40"]
    assert main(base + ["--out", str(tmp_path / "own")]) == 0
    assert main(base + ["--out", str(tmp_path / "mine")] + flags) == 0
    probs = tifffile.imread(tmp_path / "mine" / "n_prob.tif")
    assert np.array_equal(probs, tifffile.imread(tmp_path / "own" / "n_prob.tif"))  # the network is the same
    own_post = PostProcessing.from_json(UNetModel.load(SAMPLE_MODEL).postprocessing, 2)
    mine_post = dataclasses.replace(own_post, interior_threshold=0.8, seed_dynamic=0.0, foreground_threshold=0.7,
                                    min_size=40)
    own, mine = (tifffile.imread(tmp_path / d / "n.tif") for d in ("own", "mine"))
    assert np.array_equal(own, own_post.apply(probs)) and np.array_equal(mine, mine_post.apply(probs))
    assert 0 < mine.max() < own.max()  # higher seeds and size: fewer objects

    capsys.readouterr()
    ev = ["evaluate", str(SAMPLE_MODEL), "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
          "--device", "cpu", "--quiet"]
    assert main(ev) == 0
    own_summary = json.loads(capsys.readouterr().out)
    assert main(ev + flags) == 0
    mine_summary = json.loads(capsys.readouterr().out)
    assert own_summary["postprocessing"] == own_post.to_json()
    assert mine_summary["postprocessing"] == mine_post.to_json()
    assert mine_summary["ap@0.5"] != own_summary["ap@0.5"]


def test_instance_settings_are_checked_and_refused_for_semantic_models(model_path, images, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["predict", str(model_path), str(images), "--out", str(out), "--seed-threshold", "0.5", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "seed threshold" in err and "instance models" in err and "semantic" in err
    assert not out.exists()  # refused before any output
    from napari_unet.sample import SAMPLE_MODEL

    for flag, value, says in (("--seed-threshold", "1.5", "seed threshold must be a number in (0, 1)"),
                              ("--seed-dynamic", "-0.1", "seed dynamic must be a number in [0, 1)"),
                              ("--foreground-threshold", "0", "foreground threshold must be a number in (0, 1)"),
                              ("--min-size", "-3", "min size must be a whole number")):
        assert main(["predict", str(SAMPLE_MODEL), str(images), "--out", str(out), flag, value, "--quiet"]) == 1
        assert says in capsys.readouterr().err, flag
        assert not out.exists()
