"""Blockwise prediction into zarr: equal to the in-memory result, resumable, on a real dask
LocalCluster; lazy inputs (compressed TIFF, zarr, OME-Zarr)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import zarr

from napari_unet._generators import run
from napari_unet.blockwise import BlockwiseError, predict_blockwise, start_client
from napari_unet.cli import main
from napari_unet.config import ModelConfig, PredictConfig
from napari_unet.io import ImageFileError, open_image
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict
from napari_unet.sample import SAMPLE_MODEL

CPU = PredictConfig(device="cpu", tile=32)


def _semantic_model():
    import torch

    torch.manual_seed(0)
    return UNetModel.create(ModelConfig(arch="unet-paper", depth=2, base_width=4), tile=32)


def _objects(labels):
    """The partition: the set of pixel sets, ids ignored."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    ids, starts = np.unique(flat[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {frozenset(g.tolist()) for i, g in zip(ids, groups) if i != 0}


@pytest.fixture
def compressed_tiff(tmp_path, membranes):
    path = tmp_path / "isbi_zlib.tif"
    tifffile.imwrite(path, membranes[0], compression="zlib", tile=(64, 64))
    return path


def test_compressed_tiff_and_zarr_inputs_are_read_lazily(compressed_tiff, tmp_path, membranes):
    lazy = open_image(compressed_tiff)
    assert not isinstance(lazy, np.ndarray)  # chunk by chunk, never the whole image
    assert np.array_equal(lazy[10:70, 5:40], membranes[0][10:70, 5:40])
    z = zarr.open_array(str(tmp_path / "img.zarr"), mode="w", shape=membranes[0].shape, chunks=(64, 64), dtype="uint8")
    z[:] = membranes[0]
    assert np.array_equal(open_image(tmp_path / "img.zarr")[:], membranes[0])


def test_ome_zarr_levels(tmp_path, membranes):
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    path = tmp_path / "img.ome.zarr"
    root = zarr.open_group(str(path), mode="w")
    write_image(membranes[0], group=root, axes="yx", scale_factors=(2,))
    assert open_image(path).shape == (192, 192)
    assert open_image(path, level=1).shape == (96, 96)
    with pytest.raises(ImageFileError, match="has levels 0 to 1"):
        open_image(path, level=4)
    assert parse_url(str(path)) is not None


def test_semantic_blocks_equal_the_in_memory_prediction(compressed_tiff, tmp_path, membranes):
    model = _semantic_model()
    whole = run(predict(model, membranes[0], settings=CPU)).labels
    result = run(predict_blockwise(model, compressed_tiff, tmp_path / "out.zarr", settings=CPU, block=64))
    assert result.blocks == 9
    assert np.array_equal(result.labels[:], whole)  # bit-identical classes
    assert zarr.open_group(str(tmp_path / "out.zarr")).attrs["napari_unet"]["status"] == "complete"


def test_closed_membranes_in_memory_and_the_threshold_in_blocks(compressed_tiff, tmp_path, membranes, capsys):
    """A membrane model whose tuning chose closed membranes: prediction in memory closes them
    on the whole stitched map (tiles do not matter), blocks fall back to the threshold and say so."""
    from dataclasses import replace

    from napari_unet.instances import close_membranes
    from napari_unet.tiling import decide

    model = _semantic_model()
    model.postprocessing = {"threshold": 0.5, "membrane_seeds": 0.55}  # this random network's P(1) is ~0.5
    tiled = run(predict(model, membranes[0], settings=CPU, probabilities=True))
    one_pass = run(predict(model, membranes[0], settings=replace(CPU, tile=192), probabilities=True))
    assert np.array_equal(tiled.labels, close_membranes(tiled.probabilities[1], 0.55))
    assert np.array_equal(tiled.labels, one_pass.labels) and 0 < tiled.labels.mean() < 0.5
    half = [run(predict(model, membranes[0], settings=replace(CPU, tile=t))).labels for t in (32, 192)]
    assert np.array_equal(*half)  # float16 probabilities kept for the watershed: the same for any tile
    result = run(predict_blockwise(model, compressed_tiff, tmp_path / "out.zarr", settings=CPU, block=64))
    assert np.array_equal(result.labels[:], decide(tiled.probabilities, 0.5))
    assert any("watershed" in n for n in result.notes)
    model.save(tmp_path / "m.safetensors")
    assert main(["predict", str(tmp_path / "m.safetensors"), str(compressed_tiff), "--out",
                 str(tmp_path / "cli.zarr"), "--device", "cpu", "--quiet"]) == 0
    assert "closing their gaps by a watershed needs the whole image" in capsys.readouterr().err


def test_instance_blocks_give_the_same_objects_as_in_memory(tmp_path, nuclei):
    """A real image cut into 16 small blocks: every object (all smaller than the context) gets
    exactly its in-memory pixels, and one id."""
    model = UNetModel.load(SAMPLE_MODEL)
    settings = PredictConfig(device="cpu", tile=64)
    whole = run(predict(model, nuclei[0], settings=settings)).labels
    image = tmp_path / "dsb.tif"
    tifffile.imwrite(image, nuclei[0])
    result = run(predict_blockwise(model, image, tmp_path / "out.zarr", settings=settings, block=64, context=32))
    blocks = result.labels[:]
    assert result.blocks == 16 and whole.max() > 30
    assert _objects(blocks) == _objects(whole)
    assert result.objects == len(np.unique(blocks)) - 1 == len(np.unique(whole)) - 1


def test_probabilities_are_kept_in_the_store_as_in_memory(tmp_path, nuclei, membranes, capsys):
    """--probabilities with a zarr output: float32 class probabilities (classes first), equal to
    the in-memory ones; instance objects are then separated from them, as in memory."""
    model = _semantic_model()
    whole = run(predict(model, membranes[0], settings=CPU, probabilities=True))
    sem = run(predict_blockwise(model, membranes[0], tmp_path / "s.zarr", settings=CPU, block=64, probabilities=True))
    assert sem.probabilities.dtype == np.float32 and sem.probabilities.shape == (2, 192, 192)
    assert np.array_equal(sem.probabilities[:], whole.probabilities)
    assert np.array_equal(sem.labels[:], whole.labels)

    settings = PredictConfig(device="cpu", tile=64)
    crop = nuclei[0][:128, :192]
    image = tmp_path / "dsb.tif"
    tifffile.imwrite(image, crop)
    instance = UNetModel.load(SAMPLE_MODEL)
    whole = run(predict(instance, crop, settings=settings, probabilities=True))
    out = tmp_path / "i.zarr"
    argv = ["predict", str(SAMPLE_MODEL), str(image), "--out", str(out), "--block", "64", "--context", "32",
            "--tile", "64", "--device", "cpu", "--quiet", "--probabilities"]
    assert main(argv) == 0
    assert f"{out}/probabilities" in capsys.readouterr().err
    root = zarr.open_group(str(out))
    assert np.array_equal(root["probabilities"][:], whole.probabilities)
    assert _objects(root["labels"][:]) == _objects(whole.labels) and whole.labels.max() > 5
    # the same store without --probabilities is another prediction: refused, nothing changed
    assert main(argv[:-1]) == 1
    assert "differs in: probabilities" in capsys.readouterr().err


def test_interrupted_run_resumes_and_never_looks_complete(tmp_path, nuclei):
    image = tmp_path / "dsb.tif"
    tifffile.imwrite(image, nuclei[0])
    out = tmp_path / "out.zarr"
    cmd = [sys.executable, "-m", "napari_unet", "predict", str(SAMPLE_MODEL), str(image), "--out", str(out),
           "--block", "64", "--context", "32", "--tile", "64", "--device", "cpu", "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    flags = out / "scratch" / "done_a"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # wait for a few finished blocks
        if flags.exists() and sum(1 for _ in flags.glob("c/*")) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    root = zarr.open_group(str(out))
    assert root.attrs["napari_unet"]["status"] == "partial"  # not complete, and says so
    done = int(root["scratch/done_a"][:].sum())
    assert 3 <= done < 16
    attrs = dict(root.attrs["napari_unet"])
    assert "batch" not in attrs["settings"]
    # instance settings not given are not in the job: stores of versions without them resume
    assert not set(attrs["settings"]) & {"seed_threshold", "seed_dynamic", "foreground_threshold", "min_size"}
    assert "min_size" in attrs  # where earlier versions kept it
    attrs["settings"] = {**attrs["settings"], "batch": 1}  # as stores of earlier versions held it
    root.attrs["napari_unet"] = attrs
    assert main(cmd[3:] + ["--batch", "3"]) == 0  # the same command again; batching is speed only
    root = zarr.open_group(str(out))
    assert root.attrs["napari_unet"]["status"] == "complete"
    whole = run(predict(UNetModel.load(SAMPLE_MODEL), nuclei[0], settings=PredictConfig(device="cpu", tile=64))).labels
    assert _objects(root["labels"][:]) == _objects(whole)


def test_local_cluster_of_two_processes_gives_identical_results(tmp_path, nuclei, membranes):
    image = tmp_path / "dsb.tif"
    tifffile.imwrite(image, nuclei[0])
    isbi = tmp_path / "isbi.tif"
    tifffile.imwrite(isbi, membranes[0], compression="zlib")
    semantic = _semantic_model()
    instance = UNetModel.load(SAMPLE_MODEL)
    settings = PredictConfig(device="cpu", tile=64)
    alone_sem = run(predict_blockwise(semantic, isbi, tmp_path / "a.zarr", settings=CPU, block=64)).labels[:]
    alone_ins = run(predict_blockwise(instance, image, tmp_path / "b.zarr", settings=settings, block=64, context=32)).labels[:]
    client = start_client(workers=2)
    try:
        assert len(client.scheduler_info()["workers"]) == 2  # real processes
        dist_sem = run(predict_blockwise(semantic, isbi, tmp_path / "c.zarr", settings=CPU, block=64, client=client))
        dist_ins = run(predict_blockwise(instance, image, tmp_path / "d.zarr", settings=settings, block=64, context=32,
                                         client=client))
    finally:
        client.close()
        client.cluster.close()
    assert np.array_equal(dist_sem.labels[:], alone_sem)  # bit-identical classes
    assert np.array_equal(dist_ins.labels[:], alone_ins)  # the same ids, not only the same partition


def test_zarr_output_bad_requests(tmp_path, nuclei, capsys):
    image = tmp_path / "dsb.tif"
    tifffile.imwrite(image, nuclei[0])
    model = str(SAMPLE_MODEL)
    base = ["predict", model, str(image), "--device", "cpu", "--quiet", "--block", "128"]
    not_zarr = tmp_path / "file.zarr"
    not_zarr.write_text("x")
    assert main(base + ["--out", str(not_zarr)]) == 1
    assert "not a zarr store" in capsys.readouterr().err
    assert not_zarr.read_text() == "x"  # untouched

    other = tmp_path / "other.zarr"
    run(predict_blockwise(_semantic_model(), image, other, settings=CPU, block=64))
    before = zarr.open_group(str(other))["labels"][:]
    assert main(base + ["--out", str(other)]) == 1
    assert "already holds a different prediction" in capsys.readouterr().err
    assert np.array_equal(zarr.open_group(str(other))["labels"][:], before)

    assert main(base + ["--out", str(tmp_path / "x.zarr"), "--level", "2"]) == 1
    assert "levels are for OME-Zarr" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "y.zarr"), "--scheduler", "tcp://127.0.0.1:9"]) == 1
    assert "cannot reach the dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()
    with pytest.raises(BlockwiseError, match="link-z"):
        run(predict_blockwise(UNetModel.load(SAMPLE_MODEL), image, tmp_path / "z.zarr",
                              settings=PredictConfig(device="cpu", link_z=0.25)))
    one_size = UNetModel.load(SAMPLE_MODEL)
    one_size.training["object_size"]["rescaled_to"] = 24.0  # trained with --rescale-objects 24
    with pytest.raises(BlockwiseError, match="rescaled to 24 px"):
        run(predict_blockwise(one_size, image, tmp_path / "w.zarr", settings=CPU))
    assert not (tmp_path / "w.zarr").exists()


def test_ome_zarr_input_gets_ngff_labels_in_its_container(tmp_path, membranes):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image

    path = tmp_path / "img.ome.zarr"
    write_image(np.tile(membranes[0], (3, 3)), group=zarr.open_group(str(path), mode="w"), axes="yx",
                scale_factors=(2,), scale={"y": 0.004, "x": 0.004}, axes_units={"y": "micrometer", "x": "micrometer"})
    model = _semantic_model()
    out = tmp_path / "out.zarr"
    result = run(predict_blockwise(model, path, out, settings=CPU, block=128))
    group = zarr.open_group(str(path / "labels" / "napari-unet"))
    ms = dict(group.attrs)
    ms = (ms.get("multiscales") or ms["ome"]["multiscales"])[0]
    assert np.array_equal(group[ms["datasets"][0]["path"]][:], result.labels[:])
    # napari-ome-zarr, Fiji/MoBIE and QuPath read it through the NGFF metadata: ome-zarr-py's reader finds it
    nodes = list(Reader(parse_url(str(path / "labels" / "napari-unet")))())
    assert nodes and nodes[0].data[0].shape == (576, 576) and len(nodes[0].data) >= 2
    scale0 = next(t["scale"] for t in ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale")
    assert scale0 == [0.004, 0.004]  # the image's pixel size
    with pytest.raises(BlockwiseError, match="already has labels named"):
        run(predict_blockwise(model, path, tmp_path / "again.zarr", settings=CPU, block=128))


def test_3d_volume_in_blocks_equals_the_in_memory_prediction(tmp_path):
    """The same N-D code cuts a real EM stack into 3D blocks (per-axis block sizes)."""
    import torch

    from pathlib import Path

    volume = tifffile.imread(Path(__file__).parent / "data" / "isbi_stack_00-09.tif")
    torch.manual_seed(0)
    model = UNetModel.create(ModelConfig(arch="unet3d-paper", depth=2, base_width=4, classes=2, z_pooling=1))
    settings = PredictConfig(device="cpu", tile=(4, 16, 16))
    whole = run(predict(model, volume, "ZYX", settings)).labels
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, volume, compression="zlib")
    result = run(predict_blockwise(model, path, tmp_path / "out.zarr", "ZYX", settings, block=(4, 32, 48)))
    assert result.blocks == 3 * 3 * 2
    assert np.array_equal(result.labels[:], whole)


def test_write_behind_keeps_order_and_reports_a_failed_write():
    """In-process runs write a block while the next one is computed: writes run one at a time,
    in order, and a failed write stops the run instead of passing silently."""
    from napari_unet.blockwise import WriteBehind

    order = []
    writer = WriteBehind()
    for k in range(5):
        writer.submit(lambda k=k: (time.sleep(0.01), order.append(k)))
    writer.flush()
    assert order == [0, 1, 2, 3, 4]

    def fail():
        raise OSError("disk full")

    writer.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        writer.submit(lambda: order.append("never"))
    writer.close()
    assert "never" not in order


def test_3d_instances_in_blocks_give_the_same_nuclei_as_in_memory(tmp_path, data_dir):
    """A real nuclei volume (BBBC050) cut into 36 3D blocks, with a small 3D model trained on
    another embryo (tests/data/README.md): every nucleus (all smaller than the context) gets
    exactly its in-memory voxels and one id through z."""
    volume = tifffile.imread(data_dir / "bbbc050_16cell_crop.tif")
    model = UNetModel.load(data_dir / "nuclei3d_tiny.safetensors")
    assert model.dims == 3 and model.config.mode == "instance"
    settings = PredictConfig(device="cpu", tile=(8, 32, 32))
    whole = run(predict(model, volume, "ZYX", settings)).labels
    path = tmp_path / "embryo.tif"
    tifffile.imwrite(path, volume, compression="zlib")
    result = run(predict_blockwise(model, path, tmp_path / "out.zarr", "ZYX", settings, block=(8, 32, 32),
                                   context=(20, 24, 24)))
    blocks = result.labels[:]
    assert result.blocks == 4 * 3 * 3
    assert whole.max() >= 8  # real nuclei, not noise or one blob
    assert _objects(blocks) == _objects(whole)
    assert result.objects == len(np.unique(blocks)) - 1


def test_instance_settings_reach_the_blocks_and_belong_to_the_job(tmp_path, nuclei, capsys):
    """Seed threshold, dynamic and minimum size given for a zarr output separate the blocks'
    objects as in memory; a store started with other settings is not resumed with these."""
    model = UNetModel.load(SAMPLE_MODEL)
    crop = nuclei[0][:128, :192]
    own = PredictConfig(device="cpu", tile=64)
    mine = PredictConfig(device="cpu", tile=64, seed_threshold=0.8, seed_dynamic=0.0, min_size=40)
    default = run(predict(model, crop, settings=own)).labels
    whole = run(predict(model, crop, settings=mine)).labels
    assert _objects(whole) != _objects(default)  # the settings change the objects
    image = tmp_path / "dsb.tif"
    tifffile.imwrite(image, crop)
    out = tmp_path / "o.zarr"
    argv = ["predict", str(SAMPLE_MODEL), str(image), "--out", str(out), "--block", "64", "--context", "32",
            "--tile", "64", "--device", "cpu", "--quiet"]
    assert main(argv + ["--seed-threshold", "0.8", "--seed-dynamic", "0", "--min-size", "40"]) == 0
    assert _objects(zarr.open_group(str(out))["labels"][:]) == _objects(whole)
    capsys.readouterr()
    assert main(argv + ["--seed-threshold", "0.7", "--seed-dynamic", "0", "--min-size", "40"]) == 1
    assert "differs in: settings" in capsys.readouterr().err
