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


def random_instances(rng, shape=(96, 96), n=25):
    """Discs of random size and place; later ones overlap earlier ones (touching objects)."""
    labels = np.zeros(shape, np.int32)
    yy, xx = np.indices(shape)
    for i in range(1, n + 1):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.uniform(3, 9)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return labels


def imperfect_prediction(rng, true):
    """Shifted, partly merged and dropped objects, relabelled, plus false positives."""
    from scipy import ndimage as ndi

    pred = np.roll(true, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    ids = np.unique(pred[pred > 0])
    mapping = np.arange(pred.max() + 1)
    for i in ids:
        r = rng.random()
        mapping[i] = 0 if r < 0.15 else (ids[0] if r < 0.25 else i)  # dropped / merged into one
    pred = mapping[pred]
    pred = ndi.grey_erosion(pred, size=(2, 2)) if rng.random() < 0.5 else pred
    extra = random_instances(rng, true.shape, n=5)
    pred = np.where((pred == 0) & (extra > 0), extra + 1000, pred)
    perm = np.concatenate([[0], rng.permutation(np.arange(1, pred.max() + 1))])  # ids mean nothing
    return perm[pred]


def independent_ap(true, pred, threshold):
    """AP from scikit-image's contingency table, matched without any assignment algorithm:
    at an IoU of 0.5 or more an object can overlap only one other that much (but for exact
    halves, which the uniqueness check would catch), so the pairs at or over the threshold are
    the matches."""
    from skimage.metrics import contingency_table

    table = contingency_table(true, pred).toarray()  # rows: true ids, columns: predicted ids
    t_area, p_area = table.sum(axis=1), table.sum(axis=0)
    t_ids, p_ids = np.flatnonzero(t_area[1:]) + 1, np.flatnonzero(p_area[1:]) + 1
    inter = table[np.ix_(t_ids, p_ids)]
    iou = inter / (t_area[t_ids][:, None] + p_area[p_ids][None, :] - inter)
    matched = iou >= threshold
    assert (matched.sum(axis=0) <= 1).all() and (matched.sum(axis=1) <= 1).all()  # the property
    tp = int(matched.sum())
    return tp / (len(t_ids) + len(p_ids) - tp)


@pytest.mark.parametrize("seed", range(6))
def test_ap_agrees_with_an_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    true = random_instances(rng)
    pred = imperfect_prediction(rng, true)
    thresholds = (0.5, 0.65, 0.8, 0.9)
    ours = M.instance_metrics(true, pred, thresholds)
    for t in thresholds:
        assert ours[f"ap@{t:g}"] == pytest.approx(independent_ap(true, pred, t)), t
    assert 0 < ours["ap@0.5"] < 1  # an imperfect prediction, not a trivial case
