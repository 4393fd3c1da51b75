import numpy as np
import pytest

from napari_unet import metrics as M


def test_pixel_metrics_hand_computed():
    true = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 1, 1, 1, 0, 0])
    cm = M.confusion(true, pred, 2)
    np.testing.assert_array_equal(cm, [[2, 1], [1, 2]])
    m = M.pixel_metrics(cm, ("bg", "fg"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    fg = m["per_class"]["fg"]
    assert fg["precision"] == pytest.approx(2 / 3) and fg["recall"] == pytest.approx(2 / 3)
    assert fg["f1"] == pytest.approx(2 / 3) and fg["iou"] == pytest.approx(2 / 4)


def test_confusion_ignores_negative_targets():
    cm = M.confusion(np.array([-1, 0, 1]), np.array([1, 0, 1]), 2)
    assert cm.sum() == 2


def test_instance_matching_hand_computed():
    true = np.zeros((10, 10), int)
    true[0:4, 0:4] = 1  # 16 px
    true[6:10, 6:10] = 2  # 16 px, missed
    pred = np.zeros((10, 10), int)
    pred[0:4, 0:3] = 5  # 12 px inside object 1: IoU 12/16 = 0.75
    pred[6:8, 0:2] = 7  # false positive
    m = M.instance_metrics(true, pred, thresholds=(0.5, 0.8))
    assert m["tp@0.5"] == 1 and m["fp@0.5"] == 1 and m["fn@0.5"] == 1
    assert m["ap@0.5"] == pytest.approx(1 / 3)
    assert m["precision@0.5"] == pytest.approx(0.5) and m["recall@0.5"] == pytest.approx(0.5)
    assert m["mean_matched_iou@0.5"] == pytest.approx(0.75)
    assert m["tp@0.8"] == 0 and m["ap@0.8"] == 0


def test_dataset_counts_are_summed_before_dividing():
    a = np.zeros((4, 4), int)
    a[:2, :2] = 1
    perfect = M.match_counts(a, a, (0.5,))
    empty = M.match_counts(a, np.zeros_like(a), (0.5,))
    m = M.summarize_matches([perfect, empty])
    assert m["ap@0.5"] == pytest.approx(1 / 2)  # TP 1, FN 1


def test_one_to_one_matching():
    true = np.zeros((4, 8), int)
    true[:, :4] = 1
    pred = np.zeros((4, 8), int)
    pred[:, :4] = 1
    pred[:, :4][0, 0] = 2  # a one-pixel fragment of the same object
    m = M.instance_metrics(true, pred, (0.5,))
    assert m["tp@0.5"] == 1 and m["fp@0.5"] == 1


def test_adapted_rand_error():
    mem = np.zeros((9, 9), bool)
    mem[4, :] = True
    assert M.adapted_rand_error(mem, mem) == pytest.approx(0.0)
    merged = np.zeros_like(mem)
    assert M.adapted_rand_error(mem, merged) > 0.3
