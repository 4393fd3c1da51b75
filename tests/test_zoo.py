"""bioimage.io packages: export, the ecosystem's own model test, import, round trip, safety."""

import warnings
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from napari_unet._generators import run
from napari_unet.cli import main
from napari_unet.config import PredictConfig
from napari_unet.data import Pair
from napari_unet.modelfile import ModelFileError, UNetModel, load_model
from napari_unet.predict import predict
from napari_unet.training import TrainConfig, Trainer, TrainingError
from napari_unet.zoo import PackageError, export_package, import_package, input_sizes

TINY = dict(depth=2, base_width=4, batch=4, steps_per_epoch=3, epochs=1, tile=64, lr=3e-3, device="cpu", seed=0)
KINDS = {
    "paper-semantic": dict(mode="semantic", arch="unet-paper", patch=48),
    "paper-instance": dict(mode="instance", arch="unet-paper", patch=48),
    "smp-semantic": dict(mode="semantic", arch="smp", encoder="resnet18", patch=64),
    "smp-instance": dict(mode="instance", arch="smp", encoder="resnet18", patch=64),
}


def _pairs(kind, data_dir):
    if kind.endswith("semantic"):
        return [Pair("isbi", tifffile.imread(data_dir / "isbi_00.tif"), tifffile.imread(data_dir / "isbi_00_labels.tif"))]
    return [Pair("dsb", tifffile.imread(data_dir / "dsb_243443ae303c.tif"),
                 tifffile.imread(data_dir / "dsb_243443ae303c_labels.tif"))]


@pytest.fixture(scope="module")
def trained(request):
    """A tiny trained model of each kind (one short epoch on a real image)."""
    from pathlib import Path

    data_dir = Path(__file__).parent / "data"
    models = {}
    for kind, settings in KINDS.items():
        cfg = TrainConfig(**settings, **TINY)
        models[kind] = run(Trainer(_pairs(kind, data_dir), cfg).run()).model
    return models


def _image(kind, data_dir):
    name = "isbi_01.tif" if kind.endswith("semantic") else "dsb_0c6507d493bf.tif"
    return tifffile.imread(data_dir / name)


def _export(model, kind, data_dir, out):
    return export_package(model, out, _image(kind, data_dir)[None], authors=["Test Author"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_exported_package_passes_the_bioimageio_model_test(trained, kind, data_dir, tmp_path):
    from bioimageio.core import test_model

    package = _export(trained[kind], kind, data_dir, tmp_path / f"{kind}.zip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = test_model(package)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    tested = " ".join(d.name for d in summary.details)
    # both weight formats reproduced the test output, at several sizes and batch sizes
    assert "Reproduce test outputs from test inputs (pytorch_state_dict)" in tested
    assert "Reproduce test outputs from test inputs (torchscript)" in tested
    assert "size parameter n: 2" in tested


def test_package_declares_geometry_halo_preprocessing_and_documentation(trained, data_dir, tmp_path):
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5 as spec

    paper = trained["paper-instance"]
    descr = load_description(_export(paper, "paper-instance", data_dir, tmp_path / "p.zip"))
    assert isinstance(descr, spec.ModelDescr) and descr.format_version.startswith("0.5")
    y_in = descr.inputs[0].axes[2]
    g = paper.geometry
    assert (y_in.size.min, y_in.size.step) == (g.min_input, g.step) == (44, 4)  # depth 2: 44 + 4n
    y_out = descr.outputs[0].axes[2]
    assert isinstance(y_out, spec.SpaceOutputAxis) and y_out.size.offset == -2 * g.valid_margin  # valid: cropped by the net
    pre = next(p for p in descr.inputs[0].preprocessing if p.id != "ensure_dtype")
    assert pre.id == "scale_range"
    assert (pre.kwargs.min_percentile, pre.kwargs.max_percentile) == (paper.normalization.low, paper.normalization.high)
    assert [p.id for p in descr.outputs[0].postprocessing if p.id != "ensure_dtype"] == ["sigmoid"]  # distance targets
    assert descr.weights.pytorch_state_dict is not None and descr.weights.torchscript is not None
    assert [a.name for a in descr.authors] == ["Test Author"]
    assert any(c.doi is not None and "24574-4_28" in str(c.doi) for c in descr.cite)
    with zipfile.ZipFile(tmp_path / "p.zip") as zf:
        doc = zf.read("README.md").decode()
        assert zf.read("cover.png")[:4] == b"\x89PNG"
        test_in = np.load(zf.open("test_input.npy"))
    assert "watershed" in doc and "foreground_threshold" in doc  # how ids are made, with the tuned settings
    assert all(n >= lo and (n - lo) % step == 0 for n, (lo, step) in zip(test_in.shape[2:], input_sizes(paper)))
    assert test_in.std() > 0  # a real image, not zeros

    smp = trained["smp-semantic"]
    descr = load_description(_export(smp, "smp-semantic", data_dir, tmp_path / "s.zip"))
    y_out = descr.outputs[0].axes[2]
    assert isinstance(y_out, spec.SpaceOutputAxisWithHalo) and y_out.halo == smp.halo  # padded: halo to crop
    y_in = descr.inputs[0].axes[2]
    assert y_in.size.step == 32 and y_in.size.min % 32 == 0 and y_in.size.min > 2 * smp.halo
    assert [p.id for p in descr.outputs[0].postprocessing if p.id != "ensure_dtype"] == ["softmax"]


def _predict(model, image, **kw):
    return run(predict(model, image, settings=PredictConfig(device="cpu", tile=64, **kw), probabilities=True))


@pytest.mark.parametrize("kind", ["paper-instance", "smp-semantic"])
def test_round_trip_gives_identical_predictions(trained, kind, data_dir, tmp_path):
    model = trained[kind]
    back = import_package(_export(model, kind, data_dir, tmp_path / "m.zip"))
    image = _image(kind, data_dir)
    a, b = _predict(model, image), _predict(back, image)
    assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(a.labels, b.labels)
    assert back.postprocessing == model.postprocessing and (back.tile, back.halo) == (model.tile, model.halo)


def test_round_trip_of_the_bundled_model_keeps_every_instance_id(nuclei, tmp_path):
    from napari_unet.sample import SAMPLE_MODEL

    model = UNetModel.load(SAMPLE_MODEL)
    back = import_package(export_package(model, tmp_path / "nuclei.zip", nuclei[0][None], authors=["A"]))
    a = run(predict(model, nuclei[0], settings=PredictConfig(device="cpu")))
    b = run(predict(back, nuclei[0], settings=PredictConfig(device="cpu")))
    assert a.labels.max() > 20  # a real segmentation of a real image
    assert int((a.labels != b.labels).sum()) == 0


def test_cli_export_then_predict_the_package(data_dir, tmp_path):
    from napari_unet.sample import SAMPLE_MODEL

    model_file = SAMPLE_MODEL
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, _image("paper-instance", data_dir))
    pkg = tmp_path / "m.zip"
    assert main(["export", str(model_file), "--bioimageio", str(pkg), "--image", str(image),
                 "--author", "A. Biologist", "--author", "B. Engineer", "--name", "tiny nuclei"]) == 0
    assert zipfile.is_zipfile(pkg)
    for src, out in ((model_file, "a"), (pkg, "b")):
        assert main(["predict", str(src), str(image), "--out", str(tmp_path / out), "--device", "cpu", "--quiet"]) == 0
    a, b = tifffile.imread(tmp_path / "a" / "img.tif"), tifffile.imread(tmp_path / "b" / "img.tif")
    assert a.max() > 10 and np.array_equal(a, b)


def test_export_without_image_uses_the_bundled_sample(trained, tmp_path, capsys):
    model_file = trained["paper-semantic"].save(tmp_path / "m.safetensors")
    assert main(["export", str(model_file), "--bioimageio", str(tmp_path / "m.zip"), "--author", "A"]) == 0
    assert "bundled sample image" in capsys.readouterr().err


def test_fine_tune_an_imported_package(trained, data_dir, tmp_path):
    package = _export(trained["paper-instance"], "paper-instance", data_dir, tmp_path / "m.zip")
    init = load_model(package)
    start = {k: v.clone() for k, v in init.network.state_dict().items()}
    cfg = TrainConfig(**KINDS["paper-instance"], **TINY)
    result = run(Trainer(_pairs("paper-instance", data_dir), cfg, out=tmp_path / "tuned.safetensors", init=init).run())
    tuned = UNetModel.load(tmp_path / "tuned.safetensors")
    assert tuned.config == init.config
    changed = [k for k, v in tuned.network.state_dict().items() if not torch.equal(v, start[k])]
    assert changed and result.model is not None


# --------------------------------------------------------------------------------------------
# packages from elsewhere: no code runs without --trust-code

EVIL = '''
import os, pathlib
pathlib.Path(os.environ["NAPARI_UNET_TEST_MARKER"]).write_text("the package ran its code")
from napari_unet.zoo import network as Net
'''


def _foreign_package(model, data_dir, tmp_path, torchscript_only=False):
    """Our exported package, re-described as someone else's: the architecture comes from a
    Python file in the package that writes a marker file when it is imported."""
    from bioimageio.spec import load_description, save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    ours = load_description(_export(model, "smp-semantic", data_dir, tmp_path / "ours.zip"))
    (tmp_path / "evil.py").write_text(EVIL)
    sd = ours.weights.pytorch_state_dict
    arch = spec.ArchitectureFromFileDescr(source=tmp_path / "evil.py", callable=spec.Identifier("Net"),
                                          kwargs=dict(sd.architecture.kwargs))
    if torchscript_only:
        weights = spec.WeightsDescr(torchscript=ours.weights.torchscript.model_copy(update={"parent": None}))
    else:
        weights = ours.weights.model_copy(update={"pytorch_state_dict": sd.model_copy(update={"architecture": arch})})
    foreign = ours.model_copy(update={"weights": weights, "config": spec.Config(), "name": "someone elses model"})
    out = tmp_path / ("ts.zip" if torchscript_only else "foreign.zip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_bioimageio_package(foreign, output_path=out)
    return out


def test_foreign_package_runs_no_code_without_trust_code(trained, data_dir, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker.txt"
    monkeypatch.setenv("NAPARI_UNET_TEST_MARKER", str(marker))
    package = _foreign_package(trained["smp-semantic"], data_dir, tmp_path)
    with pytest.raises(PackageError, match="--trust-code") as err:
        load_model(package)
    assert "evil.py" in str(err.value)
    assert not marker.exists()
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, _image("smp-semantic", data_dir))
    out = tmp_path / "out"
    assert main(["predict", str(package), str(image), "--out", str(out), "--quiet"]) == 1
    assert not marker.exists()
    assert not out.exists() or not any(out.iterdir())

    # with the user's permission it runs, with a warning, inside our overlap-tile predictor
    with pytest.warns(UserWarning, match="running code from this package"):
        model = load_model(package, trust_code=True)
    assert marker.read_text() == "the package ran its code"
    ours = _predict(trained["smp-semantic"], _image("smp-semantic", data_dir))
    theirs = _predict(model, _image("smp-semantic", data_dir))
    assert np.abs(ours.probabilities - theirs.probabilities).max() < 1e-4
    with pytest.raises(ModelFileError, match="bioimage.io package not made by napari-unet"):
        model.save(tmp_path / "x.safetensors")
    capsys.readouterr()
    tuned = tmp_path / "t.safetensors"  # tune --out: refused before anything is predicted
    assert main(["tune", str(package), "--trust-code", "--images", "i", "--labels", "l", "--out", str(tuned)]) == 1
    assert "not made by napari-unet" in capsys.readouterr().err and not tuned.exists()
    with pytest.raises(TrainingError, match="fine-tune its own architectures"):
        Trainer(_pairs("smp-semantic", data_dir), TrainConfig(**KINDS["smp-semantic"], **TINY), init=model)


def test_torchscript_package_needs_trust_code(trained, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_TEST_MARKER", str(tmp_path / "marker.txt"))
    package = _foreign_package(trained["smp-semantic"], data_dir, tmp_path, torchscript_only=True)
    with pytest.raises(PackageError, match="TorchScript weights .a TorchScript archive is a program"):
        load_model(package)
    with pytest.warns(UserWarning, match="running code"):
        model = load_model(package, trust_code=True)
    image = _image("smp-semantic", data_dir)
    ours = _predict(trained["smp-semantic"], image)
    assert np.abs(ours.probabilities - _predict(model, image).probabilities).max() < 1e-4


# --------------------------------------------------------------------------------------------
# bad input: one clear line, nothing written


def _rewrite_rdf(package, tmp_path, name, edit):
    out = tmp_path / name
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "rdf.yaml":
                data = edit(data.decode()).encode()
            if data is not None:
                dst.writestr(item, data)
    return out


def _drop(package, tmp_path, name, member):
    out = tmp_path / name
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            if item != member:
                dst.writestr(item, src.read(item))
    return out


def test_bad_packages_get_one_clear_line_and_nothing_is_written(trained, data_dir, tmp_path, capsys):
    good = _export(trained["paper-semantic"], "paper-semantic", data_dir, tmp_path / "good.zip")
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello")
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("notes.txt", "hello")
    cases = {
        not_zip: "not a zip file",
        other_zip: "without rdf.yaml",
        _rewrite_rdf(good, tmp_path, "dataset.zip", lambda t: t.replace("type: model", "type: dataset")): "dataset, not a model",
        _rewrite_rdf(good, tmp_path, "future.zip", lambda t: "\n".join(
            "format_version: 9.9.9" if line.startswith("format_version:") else line for line in t.splitlines())): "format_version",
        _drop(good, tmp_path, "noweights.zip", "weights.pt"): "weights",
        tmp_path / "missing.zip": "does not exist",
    }
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, _image("paper-semantic", data_dir))
    for package, expected in cases.items():
        with pytest.raises(PackageError, match=expected):
            load_model(package)
        out = tmp_path / f"out_{package.stem}"
        assert main(["predict", str(package), str(image), "--out", str(out), "--quiet"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("napari-unet: error:") and expected.split()[0] in err[0], err
        assert not out.exists() or not any(out.iterdir())


def test_package_of_wrong_kind_for_the_image(trained, data_dir, tmp_path, capsys):
    package = _export(trained["paper-semantic"], "paper-semantic", data_dir, tmp_path / "m.zip")
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.stack([_image("paper-semantic", data_dir)] * 2))  # 2 channels, model takes 1
    assert main(["predict", str(package), str(rgb), "--axes", "CYX", "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "channel" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_export_bad_requests(trained, data_dir, tmp_path):
    model = trained["paper-semantic"]
    image = _image("paper-semantic", data_dir)[None]
    with pytest.raises(PackageError, match=r"\.zip"):
        export_package(model, tmp_path / "m.yaml", image, authors=["A"])
    with pytest.raises(PackageError, match="author"):
        export_package(model, tmp_path / "m.zip", image, authors=[])
    with pytest.raises(PackageError, match="channel"):
        export_package(model, tmp_path / "m.zip", np.stack([image[0]] * 2), authors=["A"])
    assert not (tmp_path / "m.zip").exists()


def test_3d_model_package_given_a_2d_image(tmp_path, data_dir, capsys):
    """A 3D model exports (axes z, y, x) and, opened again, refuses a 2D image in one line."""
    from bioimageio.spec import load_description

    from napari_unet.config import ModelConfig

    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch="unet3d-paper", depth=2, base_width=4, classes=2, z_pooling=1))
    volume = tifffile.imread(data_dir / "isbi_stack_00-09.tif")
    package = export_package(model, tmp_path / "m3d.zip", volume[None], authors=["A"])
    descr = load_description(package)
    assert [str(a.id) for a in descr.inputs[0].axes] == ["batch", "channel", "z", "y", "x"]
    assert any("3D U-Net" in c.text for c in descr.cite)
    image = tmp_path / "plane.tif"
    tifffile.imwrite(image, volume[0])
    out = tmp_path / "o"
    assert main(["predict", str(package), str(image), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Z" in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_package_documentation_tells_other_tools_the_object_size_a_model_needs():
    from napari_unet.config import ModelConfig
    from napari_unet.zoo import _documentation

    m = UNetModel.create(ModelConfig(arch="unet", depth=2, base_width=8, classes=2, mode="instance",
                                     instance_targets="distance"), halo=16, tile=64)
    m.training["object_size"] = {"diameter": 24.0, "area": 452.0}
    assert "## Object size" not in _documentation(m, "")  # trained at its images' own scale: nothing to do
    m.training["object_size"]["rescaled_to"] = 24.0
    doc = _documentation(m, "")
    assert "## Object size" in doc and "objects are 24 pixels across" in doc


def test_package_documentation_says_when_bright_backgrounds_must_be_inverted():
    from napari_unet.config import ModelConfig, Normalization
    from napari_unet.zoo import _documentation

    config = ModelConfig(arch="unet", depth=2, base_width=8, classes=2, mode="instance", instance_targets="distance")
    assert "must be inverted" not in _documentation(UNetModel.create(config, halo=16, tile=64), "")
    doc = _documentation(UNetModel.create(config, Normalization(polarity="auto"), halo=16, tile=64), "")
    assert "bright background" in doc and "must be inverted" in doc
