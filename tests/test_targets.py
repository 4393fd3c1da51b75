import numpy as np
import pytest

from napari_unet.targets import (
    IGNORE, LabelsError, border_distances, check_labels, class_balance, instance_classes,
    make_targets, paper_weights, semantic_targets,
)


def two_touching_squares():
    lab = np.zeros((20, 30), np.uint16)
    lab[5:15, 5:15] = 1
    lab[5:15, 15:25] = 2  # touches object 1 along x = 14 | 15
    return lab


def test_touching_objects_are_separated_by_boundary():
    t = instance_classes(two_touching_squares(), boundary_width=1)
    assert t[10, 14] == 2 and t[10, 15] == 2  # both sides of the contact are boundary
    assert t[10, 10] == 1 and t[10, 20] == 1
    assert t[0, 0] == 0
    # interior pixels of the two objects are not connected: they stay separate seeds
    from scipy import ndimage as ndi

    assert ndi.label(t == 1)[1] == 2


def test_boundary_width():
    lab = np.zeros((21, 21), np.uint8)
    lab[3:18, 3:18] = 1
    for width in (1, 2, 3):
        t = instance_classes(lab, width)
        assert (t[10, 3 : 3 + width] == 2).all() and t[10, 3 + width] == 1


def test_border_distances_hand_computed():
    lab = np.zeros((1, 11), np.int32)
    lab[0, 0] = 1
    lab[0, 10] = 2
    d1, d2 = border_distances(lab, reach=20)
    assert d1[0, 5] == 5 and d2[0, 5] == 5
    assert d1[0, 2] == 2 and d2[0, 2] == 8


def test_paper_weight_map_peaks_in_narrow_gaps():
    lab = np.zeros((30, 40), np.uint16)
    lab[5:25, 5:18] = 1
    lab[5:25, 20:33] = 2  # a 2-pixel gap at x = 18, 19
    t = instance_classes(lab, 1)
    w = paper_weights(lab, t, 3, w0=10, sigma=5)
    wc = class_balance(t, 3)
    # in the gap d1 = 1, d2 = 2 -> wc + 10 exp(-9/50)
    assert w[15, 18] == pytest.approx(wc[0] + 10 * np.exp(-9 / 50), rel=1e-5)
    # far from both objects the border term vanishes
    assert w[15, 39] == pytest.approx(wc[0] + 10 * np.exp(-((39 - 32) + (39 - 17)) ** 2 / 50), rel=1e-4)
    assert w[15, 18] > w[1, 1] > 0
    # object pixels get only the class weight
    assert w[15, 10] == pytest.approx(wc[1])


def test_class_balance_is_inverse_frequency():
    t = np.array([0, 0, 0, 1], np.int16)
    w = class_balance(t, 2)
    assert w[1] / w[0] == pytest.approx(3.0)


def test_semantic_unlabelled_zero():
    lab = np.array([[0, 1, 2]])
    np.testing.assert_array_equal(semantic_targets(lab, True), [[IGNORE, 0, 1]])
    np.testing.assert_array_equal(semantic_targets(lab, False), [[0, 1, 2]])
    t, w, d = make_targets(lab, "semantic", 2, unlabelled_zero=True)
    assert d is None
    assert w[0, 0] == 0 and w[0, 1] > 0


@pytest.mark.parametrize(
    "labels,match",
    [
        (np.zeros((4, 4), np.uint8), "all zero"),
        (np.full((4, 4), 0.5), "fractional"),
        (np.array([[-1, 2]]), "negative"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(LabelsError, match=match):
        check_labels(labels)


def test_semantic_class_out_of_range():
    with pytest.raises(LabelsError, match="class 3"):
        make_targets(np.array([[0, 3]]), "semantic", 2)


def test_distance_targets_are_scaled_per_object():
    lab = np.zeros((30, 60), np.uint16)
    lab[5:25, 5:25] = 1  # large
    lab[10:16, 40:46] = 2  # small
    t, w, d = make_targets(lab, "instance", 2, instance_targets="distance")
    assert set(np.unique(t)) == {0, 1}
    assert d.dtype == np.float32 and d.min() == 0
    for i in (1, 2):  # each object reaches 1 at its centre, whatever its size
        assert d[lab == i].max() == pytest.approx(1.0)
        assert d[lab == i].min() > 0
    assert (d[lab == 0] == 0).all()
    assert w.shape == lab.shape and (w > 0).all()
