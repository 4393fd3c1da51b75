import numpy as np
import pytest
import tifffile
import torch

from napari_unet.augment import Augmentation, augment, elastic_field, gaussian_blur, random_gamma
from napari_unet.config import PredictConfig
from napari_unet.instances import close_membranes, instances_from_probabilities
from napari_unet.metrics import iou_matrix
from napari_unet.modelfile import UNetModel
from napari_unet.predict import predict, run
from napari_unet.sample import SAMPLE_IMAGE, SAMPLE_MODEL


def test_touching_objects_become_two_instances():
    p = np.zeros((3, 20, 40), np.float32)
    p[0] = 1
    for x0 in (5, 21):  # two interiors separated by a boundary column at x = 19, 20
        p[:, 5:15, x0 : x0 + 14] = 0
        p[1, 5:15, x0 : x0 + 14] = 1
    p[:, 5:15, 19:21] = 0
    p[2, 5:15, 19:21] = 1
    labels = instances_from_probabilities(p, min_size=5)
    assert labels.max() == 2
    assert (labels[5:15, 19:21] > 0).all()  # boundary pixels are given to an object
    assert len(np.unique(labels[10])) == 3


def test_small_objects_removed_and_ids_consecutive():
    p = np.zeros((3, 10, 10), np.float32)
    p[0] = 1
    p[:, 1:5, 1:5] = [[[0]], [[1]], [[0]]]
    p[:, 8, 8] = [0, 1, 0]
    labels = instances_from_probabilities(p, min_size=4, first_id=7)
    assert set(np.unique(labels)) == {0, 7}


def test_objects_across_tile_borders_are_neither_split_nor_duplicated():
    """Real data, bundled trained model: tiny tiles (many nuclei cross tile borders) give
    exactly the instances of one big tile, because post-processing runs on the stitched map."""
    model = UNetModel.load(SAMPLE_MODEL)
    image = tifffile.imread(SAMPLE_IMAGE)[:192, :256]
    small = run(predict(model, image, "YX", PredictConfig(tile=32, device="cpu"))).labels
    big = run(predict(model, image, "YX", PredictConfig(tile=256, device="cpu"))).labels
    assert small.max() > 20
    crossing = [i for i in range(1, small.max() + 1)
                if len(np.unique(np.nonzero(small == i)[1] // 32)) > 1 or len(np.unique(np.nonzero(small == i)[0] // 32)) > 1]
    assert len(crossing) > 10  # many objects span several tiles
    iou, t_ids, p_ids = iou_matrix(big, small)
    assert len(t_ids) == len(p_ids)
    assert (iou.max(axis=1) == 1).all()  # every object identical, none split or doubled


def test_augmentation_moves_image_and_labels_together():
    g = torch.Generator().manual_seed(0)
    lab = torch.zeros(4, 64, 64, dtype=torch.long)
    lab[:, 10:30, 20:50] = 1
    lab[:, 40:60, 5:25] = 2
    image = lab[:, None].float()
    maps = torch.ones(4, 1, 64, 64)
    img2, lab2, w2 = augment(image, lab, maps, Augmentation(intensity=0, scale=0.5), g)
    assert w2.shape == (4, 1, 64, 64)
    assert not torch.equal(lab2, lab)  # something happened
    # nearest-neighbour labels stay integer classes and follow the bilinear image
    agree = (img2[:, 0].round().long() == lab2).float().mean()
    assert agree > 0.97
    assert set(torch.unique(lab2).tolist()) <= {0, 1, 2}


def test_elastic_field_matches_paper_scale():
    g = torch.Generator().manual_seed(0)
    grid = elastic_field(64, 101, 101, sigma=10, grid=3, generator=g, device="cpu")
    base = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 101), torch.linspace(-1, 1, 101), indexing="xy"), -1)
    displacement_px = (grid - base) * 50  # normalised units -> pixels
    # control points are N(0, 10 px): the displacement at a control point (corner) has std ~10
    corner = displacement_px[:, 0, 0, 0]
    assert 7 < float(corner.std()) < 13
    # smooth: neighbouring pixels move almost alike
    assert float((displacement_px[:, 1:] - displacement_px[:, :-1]).abs().max()) < 3


def test_tuning_picks_the_best_postprocessing():
    from napari_unet.instances import PostProcessing, tune

    truth = np.zeros((40, 40), np.int32)
    truth[5:15, 5:15] = 1
    truth[25:35, 25:35] = 2
    p = np.zeros((3, 40, 40), np.float32)
    p[0] = 1
    for sl in (np.s_[5:15, 5:15], np.s_[25:35, 25:35]):
        p[(slice(None),) + sl] = np.array([0.35, 0.55, 0.1])[:, None, None]  # weak interiors
    p[:, 1:3, 30:33] = np.array([0.0, 0.9, 0.1])[:, None, None]  # a 6-px false positive
    best, ap = tune([p], [truth], {"interior_threshold": (0.5, 0.6), "foreground_threshold": (0.5,), "min_size": (1, 15)})
    assert ap == 1.0 and best == PostProcessing(0.5, 0.5, 15)


def test_near_ties_go_to_the_settings_with_the_fewest_seeds():
    from napari_unet.instances import PostProcessing, fewest_seeds

    scored = [
        (0.80, PostProcessing(0.4, 0.6, 17, 0.1)),
        (0.798, PostProcessing(0.5, 0.6, 17, 0.1)),
        (0.797, PostProcessing(0.5, 0.6, 30, 0.2)),
        (0.79, PostProcessing(0.6, 0.6, 17, 0.2)),  # fewer seeds still, but not a near-tie
    ]
    assert fewest_seeds(scored, 0.005) == (PostProcessing(0.5, 0.6, 30, 0.2), 0.797)
    assert fewest_seeds(scored, 0.0) == (PostProcessing(0.4, 0.6, 17, 0.1), 0.80)
    # same seed rule: the higher AP of the two
    tie = [(0.70, PostProcessing(0.5, 0.5, 15, 0.1)), (0.702, PostProcessing(0.5, 0.6, 15, 0.1))]
    assert fewest_seeds(tie, 0.01) == (PostProcessing(0.5, 0.6, 15, 0.1), 0.702)


def test_tuning_with_a_tolerance_prefers_fewer_seeds_only_on_a_near_tie():
    from napari_unet.instances import tune

    def nucleus(p, truth, y, x, r, peak, i):
        yy, xx = np.mgrid[0:p.shape[1], 0:p.shape[2]]
        inside = np.hypot(yy - y, xx - x) < r
        truth[inside] = i
        p[0][inside] = 1
        p[1][inside] = peak * (1 - np.hypot(yy - y, xx - x)[inside] / r)

    grid = {"interior_threshold": (0.3, 0.5), "foreground_threshold": (0.5,), "min_size": (1,),
            "seed_dynamic": (0.05,)}
    truth = np.zeros((60, 60), np.int32)
    p = np.zeros((2, 60, 60), np.float32)
    nucleus(p, truth, 15, 15, 10, 1.0, 1)
    nucleus(p, truth, 40, 40, 10, 1.0, 2)
    assert tune([p], [truth], grid)[0].interior_threshold == 0.3  # a tie: the first one
    post, ap = tune([p], [truth], grid, tolerance=0.005)
    assert post.interior_threshold == 0.5 and ap == 1.0
    nucleus(p, truth, 15, 45, 8, 0.4, 3)  # a faint nucleus that only the low threshold seeds
    post, ap = tune([p], [truth], grid, tolerance=0.005)
    assert post.interior_threshold == 0.3 and ap == 1.0


def test_touching_objects_separated_from_distance_targets(nuclei):
    """Distance representation: the targets of real touching nuclei, turned back into
    instances, give the same objects (the distance dips to 0 where two nuclei touch)."""
    from napari_unet.targets import boundary_distance

    labels = nuclei[1].astype(np.int32)
    distance = boundary_distance(labels)
    p = np.stack([(labels > 0).astype(np.float32), distance])
    out = instances_from_probabilities(p, min_size=1, interior_threshold=0.3)
    iou, t_ids, p_ids = iou_matrix(labels, out)
    matched = (iou.max(axis=1) > 0.5).mean()
    assert matched > 0.95 and abs(len(p_ids) - len(t_ids)) <= 0.05 * len(t_ids)


def test_two_touching_squares_from_distance_map():
    from napari_unet.targets import boundary_distance

    labels = np.zeros((20, 40), np.int32)
    labels[5:15, 5:20] = 1
    labels[5:15, 20:35] = 2
    d = boundary_distance(labels)
    assert d[10, 19] < 0.25 and d[10, 20] < 0.25  # low where they touch
    assert d[labels == 1].max() == pytest.approx(1) and d[labels == 0].max() == 0
    out = instances_from_probabilities(np.stack([(labels > 0).astype(np.float32), d]), min_size=5)
    assert out.max() == 2 and len(np.unique(out[10])) == 3


def test_h_maxima_seeds_split_nuclei_whose_distance_ridge_never_dips_below_the_threshold():
    """Two overlapping disks predicted as one blob whose distance map has two peaks joined by
    a saddle at ~0.6: thresholded seeds (0.3) see one object, h-maxima seeds see two, and a
    flat ridge (no saddle) stays one object."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:40, :60]
    blob = ((yy - 20) ** 2 + (xx - 20) ** 2 < 12**2) | ((yy - 20) ** 2 + (xx - 38) ** 2 < 12**2)
    d = ndi.distance_transform_edt(blob)
    d = (d / d.max()).astype(np.float32)  # peaks 1.0 at the centres, saddle ~0.6 at x = 29
    assert 0.4 < d[20, 29] < 0.8
    p = np.stack([blob.astype(np.float32), d])
    assert instances_from_probabilities(p, min_size=5, interior_threshold=0.3).max() == 1
    two = instances_from_probabilities(p, min_size=5, interior_threshold=0.3, seed_dynamic=0.1)
    assert two.max() == 2
    assert two[20, 15] != two[20, 42] and two[20, 15] > 0 and two[20, 42] > 0
    assert (two > 0).sum() == blob.sum()  # the whole blob is given out
    # one elongated nucleus (a flat ridge, no saddle) is not split
    rod = (np.abs(yy - 20) < 8) & (xx > 10) & (xx < 50)
    dr = ndi.distance_transform_edt(rod)
    p_rod = np.stack([rod.astype(np.float32), (dr / dr.max()).astype(np.float32)])
    assert instances_from_probabilities(p_rod, min_size=5, interior_threshold=0.3, seed_dynamic=0.1).max() == 1
    # the dynamic is part of the stored post-processing
    from napari_unet.instances import PostProcessing

    post = PostProcessing.from_json({"interior_threshold": 0.3, "foreground_threshold": 0.5, "min_size": 5,
                                     "seed_dynamic": 0.1, "validation_ap@0.5": 0.9})
    np.testing.assert_array_equal(post.apply(p), two)
    assert PostProcessing.from_json(post.to_json()) == post


def test_holes_are_filled_and_enclosed_fragments_merged():
    """A nucleus with bright chromocentres: a ring with a hole and a separate seed inside must
    become one object, as must a fragment lying inside it."""
    from napari_unet.instances import merge_enclosed

    labels = np.zeros((40, 40), np.int32)
    labels[5:35, 5:35] = 1
    labels[12:16, 12:16] = 0  # a hole
    labels[20:26, 20:26] = 2  # a fragment enclosed by object 1
    labels[0:3, 0:3] = 3  # an object touching only background: untouched
    original = labels.copy()
    out = merge_enclosed(labels)
    np.testing.assert_array_equal(labels, original)  # input not modified
    assert (out[5:35, 5:35] == 1).all()
    assert (out[0:3, 0:3] == 3).all()
    open_gap = np.zeros((20, 20), np.int32)
    open_gap[:, 5:15] = 1
    open_gap[:, 9:11] = 0  # a background channel open to the image border is not a hole
    assert (merge_enclosed(open_gap)[:, 9:11] == 0).all()


def test_object_size_and_relative_size_grid():
    from napari_unet.instances import grid_for, object_size

    lab = np.zeros((50, 50), np.int32)
    lab[:10, :10] = 1  # 100 px
    lab[20:30, 20:40] = 2  # 200 px
    lab[40:50, 40:50] = 3  # 100 px
    size = object_size([lab])
    assert size["area"] == 100 and size["objects"] == 3
    assert size["diameter"] == pytest.approx(2 * np.sqrt(100 / np.pi))
    assert grid_for(2, size["area"])["min_size"] == (5, 15, 30)


def test_zoom_augmentation_magnifies_about_the_centre():
    g = torch.Generator().manual_seed(0)
    grid = elastic_field(1, 33, 33, 0.0, 3, g, "cpu", zoom=torch.tensor([2.0]))
    # with no elastic displacement, the corner of the patch samples halfway to the corner
    assert torch.allclose(grid[0, 0, 0], torch.tensor([-0.5, -0.5]))
    assert torch.allclose(grid[0, 16, 16], torch.tensor([0.0, 0.0]), atol=1e-6)


def test_invert_augmentation_flips_intensities_only():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(64, 1, 8, 8)
    targets = torch.zeros(64, 8, 8, dtype=torch.long)
    maps = torch.ones(64, 1, 8, 8)
    out, t2, _ = augment(image, targets, maps, Augmentation(flips=False, elastic_sigma=0, intensity=0, invert=0.5), g)
    inverted = torch.isclose(out, 1 - image).flatten(1).all(1)
    kept = torch.isclose(out, image).flatten(1).all(1)
    assert (inverted | kept).all() and 10 < int(inverted.sum()) < 54
    assert torch.equal(t2, targets)


def test_blur_is_a_gaussian_per_patch_with_mirrored_borders():
    from scipy.ndimage import gaussian_filter

    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 2, 30, 40, generator=g)
    sigma = torch.tensor([0.0, 1.0, 2.0])
    out = gaussian_blur(image, sigma)
    radius = 6  # 3 * the largest sigma: the kernel every patch of the batch shares
    assert torch.equal(out[0], image[0])
    for i in (1, 2):
        for c in range(2):
            s = float(sigma[i])
            expected = gaussian_filter(image[i, c].double().numpy(), s, mode="mirror", truncate=radius / s)
            np.testing.assert_allclose(out[i, c].numpy(), expected, atol=1e-5)
    # volumes: every z plane blurred in-plane, nothing mixed across z
    volume = torch.rand(2, 1, 5, 24, 24, generator=g)
    blurred = gaussian_blur(volume, torch.tensor([1.0, 0.5]))
    for z in range(5):
        assert torch.allclose(blurred[:, :, z], gaussian_blur(volume[:, :, z], torch.tensor([1.0, 0.5])))


def test_gamma_bends_the_contrast_and_keeps_each_patch_range():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 1, 16, 16, generator=g) * 2 - 0.5  # normalised images leave [0, 1]
    out = random_gamma(image, torch.tensor([0.5, 1.0, 2.0]))
    assert torch.allclose(out.amin((1, 2, 3)), image.amin((1, 2, 3)), atol=1e-6)
    assert torch.allclose(out.amax((1, 2, 3)), image.amax((1, 2, 3)), atol=1e-6)
    assert torch.allclose(out[1], image[1], atol=1e-6)
    assert out[0].mean() > image[0].mean() and out[2].mean() < image[2].mean()  # g < 1 brightens
    # order is kept: gamma is monotonic
    assert torch.equal(out[0].flatten().argsort(), image[0].flatten().argsort())


def test_blur_and_gamma_augmentation_change_the_image_only_and_are_seeded():
    image = torch.rand(8, 1, 32, 32)
    targets = torch.randint(0, 3, (8, 32, 32))
    maps = torch.rand(8, 1, 32, 32)
    settings = Augmentation(flips=False, elastic_sigma=0, intensity=0, blur=1.5, gamma=0.5)
    out, t2, m2 = augment(image, targets, maps, settings, torch.Generator().manual_seed(3))
    again, _, _ = augment(image, targets, maps, settings, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    assert torch.equal(t2, targets) and torch.equal(m2, maps)
    # blur smooths: neighbouring pixels differ less than in the input
    assert (out.diff(dim=-1).abs().mean() < image.diff(dim=-1).abs().mean())


def test_augmentation_settings_are_checked():
    from napari_unet.training import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="noise must be >= 0"):
        TrainConfig(noise=-0.1)
    with pytest.raises(ConfigError, match="invert is a probability"):
        TrainConfig(invert=2)
    with pytest.raises(ConfigError, match="gamma must be >= 0"):
        TrainConfig(gamma=-1)
    assert TrainConfig(blur=2.0, gamma=0.3).augmentation.gamma == 0.3


def test_a_blur_wider_than_the_patch_is_cut_to_what_mirroring_allows():
    image = torch.rand(2, 1, 6, 6)
    out = gaussian_blur(image, torch.tensor([5.0, 0.0]))  # a 3-sigma radius of 15 > 6 pixels
    assert torch.isfinite(out).all() and torch.equal(out[1], image[1])
    assert out[0].std() < image[0].std()


def test_non_finite_probabilities_do_not_hang_the_seeds():
    """h-maxima never returns on NaN input (scikit-image): non-finite values count as 0."""
    rng = np.random.default_rng(0)
    p = rng.random((2, 40, 40)).astype(np.float32)
    p[:, 5:10, 5:10] = np.nan
    labels = instances_from_probabilities(p, min_size=1, interior_threshold=0.3, seed_dynamic=0.1)
    assert labels.shape == (40, 40) and (labels[5:10, 5:10] == 0).all()


def test_closed_membranes_keep_two_cells_apart_across_a_faint_stretch():
    from scipy import ndimage as ndi

    p = np.full((30, 40), 0.05, np.float32)
    p[:, 20] = 0.9  # the membrane between two cells ...
    p[12:18, 20] = 0.4  # ... faint over six rows
    assert ndi.label(p <= 0.5)[1] == 1  # a threshold merges the two cells
    closed = close_membranes(p, 0.2)
    assert closed.dtype == np.uint8 and ndi.label(closed == 0)[1] == 2
    assert (closed[:, 20] == 1).all() and closed.sum() == 30  # one pixel wide, nothing of the cells lost
    volume = close_membranes(np.stack([p] * 3), 0.2)  # volumes: a membrane surface
    assert ndi.label(volume == 0)[1] == 2
    assert close_membranes(np.full((5, 5), 0.9, np.float32), 0.2).all()  # no cell seed: all membrane
    assert close_membranes(p, 0.2).sum() == 30 and p[12, 20] == np.float32(0.4)  # input not modified


def test_tuning_computes_h_maxima_once_per_dynamic_with_the_same_result(nuclei, monkeypatch):
    """The tuning reuses each image's h-maxima across the thresholds: the same settings and AP
    as segmenting every setting from scratch, with one h-maxima per image and dynamic."""
    import itertools

    from napari_unet import instances as I
    from napari_unet.metrics import match_counts, summarize_matches

    model = UNetModel.load(SAMPLE_MODEL)
    img, lab = nuclei
    probs = run(predict(model, img, settings=PredictConfig(device="cpu"), probabilities=True)).probabilities
    windows = [probs[:, :96, :96], probs[:, 96:, 96:]]
    truths = [lab[:96, :96], lab[96:, 96:]]
    grid = I.grid_for(2)
    best, best_ap = None, -1.0
    for seed, fg, dyn in itertools.product(grid["interior_threshold"], grid["foreground_threshold"], grid["seed_dynamic"]):
        for min_size in grid["min_size"]:
            counts = [match_counts(t, I.drop_small(I.segment(p, seed, fg, dyn), min_size), (0.5,))
                      for p, t in zip(windows, truths)]
            ap = summarize_matches(counts)["ap@0.5"]
            if ap > best_ap + 1e-9:
                best, best_ap = I.PostProcessing(seed, fg, int(min_size), dyn), ap
    calls = []
    real = I.maxima
    monkeypatch.setattr(I, "maxima", lambda p, d: calls.append(d) or real(p, d))
    post, ap = I.tune(windows, truths, grid)
    assert (post, ap) == (best, best_ap) and best_ap > 0.5
    assert sorted(calls) == sorted(list(grid["seed_dynamic"]) * len(windows))


def test_min_size_zero_keeps_ids_consecutive():
    """drop_small with min_size 0 (offered by predict and the widget): ids with no pixels are
    dropped too, so ids stay consecutive (predict and the blocks count objects by the max id)."""
    from napari_unet.instances import drop_small

    labels = np.array([[0, 2, 2, 4], [0, 4, 7, 0]])
    out = drop_small(labels, 0, first_id=5)
    assert sorted(np.unique(out)) == [0, 5, 6, 7]
    assert np.array_equal(out > 0, labels > 0)
