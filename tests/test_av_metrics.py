"""Audio-visual metrics against hand-worked cases and the official scripts' edge cases.

References and how they were checked during development (the official code is not importable in the test
environment: it imports CUDA models, torchvision and pandas at module level):

- AVVP: YapengTian/AVVP-ECCV20 ``utils/eval_metrics.py`` (``segment_level``, ``event_level``) was run side by side
  with ours on 3,000 random videos (25 x 10 grids, empty videos and empty predictions included): every
  per-video value and the ten whole-set numbers (``100 * np.mean``, Type as main_avvp.py sums it) were equal
  with ``==``, so the tolerance here is exact.
- Localisation: LVS ``utils.py`` (``normalize_img``, ``testset_gt``, ``Evaluator.cal_CIOU``) and ``test.py``'s
  per-sample steps with ``cv2.resize`` and ``sklearn.metrics.auc`` were run on 400 samples (14x14, 7x7, 20x20
  and 224x224 maps, rounded maps with many ties, constant maps; Flickr XML written by our writer, VGG-SS boxes
  from the real vggss.json): cIoU, success rate and AUC equal with ``==`` when OpenCV's IPP path is off. With
  IPP on (the default of the opencv-python wheels) OpenCV's resize differs from its own generic path by up to
  1e-4 on non-integer scales (20 -> 224), which moved 6 of 400 cIoUs by < 3e-4; integer scales (14 -> 224,
  the LVS model's maps) agreed exactly.
- AVQA and AVE: hand-worked counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.data.benchmarks.music_avqa import AVQARecord
from xmodal.errors import MetricInputError, NonFiniteError, ShapeError
from xmodal.metrics.ave import ave_segment_accuracy, best_window, cross_modal_localization_accuracy
from xmodal.metrics.avqa import avqa_accuracy
from xmodal.metrics.avvp import avvp_postprocess, avvp_scores, event_level, segment_level
from xmodal.metrics.localization import (
    binarize_lvs,
    ciou,
    flickr_gt_map,
    localization_scores,
    resize_linear,
    vggss_gt_map,
)

# ------------------------------------------------------------------------------------------------------ AVVP


def _grid(rows: dict[int, list[int]], n_classes: int = 3) -> np.ndarray:
    g = np.zeros((n_classes, 10), dtype=int)
    for c, row in rows.items():
        g[c] = row
    return g


def test_avvp_empty_video_scores_one():
    empty = _grid({})
    assert segment_level(empty, empty, empty, empty, empty, empty) == (1.0, 1.0, 1.0, 1.0)
    assert event_level(empty, empty, empty, empty, empty, empty) == (1.0, 1.0, 1.0, 1.0)
    assert set(avvp_scores([empty], [empty], [empty], [empty]).values()) == {100.0}


def test_avvp_hand_worked_segment_and_event_level():
    gt_a = _grid({0: [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]})
    pred_a = _grid({0: [0, 1, 1, 1, 1, 0, 0, 0, 0, 0], 1: [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]})
    empty = _grid({})
    # Segment level, audio: class 0 TP 3 FP 1 FN 1 -> 6/8; class 1 only FP -> 0; class 2 skipped -> 0.375.
    # Visual and audio-visual have nothing anywhere -> 1.0. Event@AV pools audio and visual -> 0.375.
    assert segment_level(pred_a, empty, empty, gt_a, empty, empty) == (0.375, 1.0, 0.375, 1.0)
    # Event level: [1, 5) vs [0, 4): intersection 3 >= 0.5 * union 5 -> TP; class 1's [8, 10) is an FP.
    assert event_level(pred_a, empty, empty, gt_a, empty, empty) == (0.5, 1.0, 0.5, 1.0)
    scores = avvp_scores([gt_a], [empty], [pred_a], [empty])
    assert scores["segment_audio"] == 37.5 and scores["segment_visual"] == 100.0
    assert scores["segment_type"] == (100.0 + 37.5 + 100.0) / 3 and scores["segment_event"] == 37.5
    assert scores["event_audio"] == 50.0 and scores["event_event"] == 50.0


def test_avvp_event_matching_at_exactly_half_and_not_one_to_one():
    """The reference matches without one-to-one assignment: each prediction is a TP if it overlaps any GT event
    enough, each GT event an FN if no prediction does. On one row of 1-s segments two disjoint predicted runs
    can never both reach IoU >= 0.5 with the same GT run (each would need at least half of it, so together they
    would cover it, gap included), so the rule cannot double-count here; the test checks the loops' counting."""
    gt = _grid({0: [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]})
    half = _grid({0: [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]})        # IoU 2/4 = 0.5 exactly: a TP
    below = _grid({0: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]})       # IoU 1/4: an FP, and the GT event an FN
    empty = _grid({})
    assert event_level(half, empty, empty, gt, empty, empty)[0] == 1.0
    assert event_level(below, empty, empty, gt, empty, empty)[0] == 0.0
    # Two GT events, one prediction each side and one prediction matching nothing: the loops count TP per
    # prediction against any GT event and FN per unmatched GT event (TP 2, FP 1, FN 0 -> 4/5).
    gt2 = _grid({0: [1, 1, 0, 0, 0, 1, 1, 0, 0, 0]})
    pred2 = _grid({0: [1, 0, 0, 0, 0, 1, 1, 1, 0, 1]})
    assert event_level(pred2, empty, empty, gt2, empty, empty)[0] == 0.8


def test_avvp_audio_visual_is_the_product():
    gt_a = _grid({0: [1] * 10})
    gt_v = _grid({0: [0] * 5 + [1] * 5})
    pred_a = _grid({0: [1] * 10})
    pred_v = _grid({0: [1] * 5 + [0] * 5})  # AV prediction empty where the AV ground truth is [5, 10)
    s = avvp_scores([gt_a], [gt_v], [pred_a], [pred_v])
    assert s["segment_audio"] == 100.0 and s["segment_visual"] == 0.0 and s["segment_av"] == 0.0


def test_avvp_ground_truth_as_prediction_is_100():
    rng = np.random.default_rng(0)
    ga = [(rng.random((25, 10)) < 0.2).astype(int) for _ in range(20)]
    gv = [(rng.random((25, 10)) < 0.2).astype(int) for _ in range(20)]
    assert set(avvp_scores(ga, gv, ga, gv).values()) == {100.0}


def test_avvp_postprocess_video_level_filter():
    frame = np.full((10, 3), 0.9)
    frame[:5, 2] = 0.2
    video = np.array([0.7, 0.49, 0.5])  # class 1 filtered out, class 2 kept at exactly 0.5
    pa, pv = avvp_postprocess(frame, frame * 0.5, video)
    assert pa.shape == (3, 10)
    assert pa[0].tolist() == [1] * 10 and pa[1].tolist() == [0] * 10 and pa[2].tolist() == [0] * 5 + [1] * 5
    assert pv.sum() == 0  # 0.45 < 0.5 everywhere
    with pytest.raises(ShapeError):
        avvp_postprocess(frame, frame, np.ones(4))


def test_avvp_rejects_probabilities_and_mismatched_shapes():
    with pytest.raises(MetricInputError, match="only 0 and 1"):
        avvp_scores([np.full((2, 10), 0.7)], [np.zeros((2, 10))], [np.zeros((2, 10))], [np.zeros((2, 10))])
    with pytest.raises(ShapeError):
        avvp_scores([np.zeros((2, 10))], [np.zeros((3, 10))], [np.zeros((2, 10))], [np.zeros((2, 10))])


# ------------------------------------------------------------------------------------------------------ localisation

def test_resize_linear_hand_worked():
    # 3x4 -> 6x8: half-pixel centres, edge pixels clamped (values checked by hand, e.g. row 0 column 1 is
    # 0.75 * 0 + 0.25 * 1).
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = np.array([[0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3],
                         [1, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4],
                         [3, 3.25, 3.75, 4.25, 4.75, 5.25, 5.75, 6],
                         [5, 5.25, 5.75, 6.25, 6.75, 7.25, 7.75, 8],
                         [7, 7.25, 7.75, 8.25, 8.75, 9.25, 9.75, 10],
                         [8, 8.25, 8.75, 9.25, 9.75, 10.25, 10.75, 11]], dtype=np.float32)
    out = resize_linear(a, (6, 8))
    assert out.dtype == np.float32 and np.array_equal(out, expected)


def test_resize_linear_equals_opencv_generic_path():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    use_ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)  # OpenCV's IPP kernel rounds differently (see the module docstring)
    try:
        for shape in [(14, 14), (7, 7), (20, 20), (1, 1), (100, 300), (500, 333)]:
            for dtype in (np.float32, np.float64):
                a = rng.normal(size=shape).astype(dtype)
                assert np.array_equal(resize_linear(a), cv2.resize(a, (224, 224), interpolation=cv2.INTER_LINEAR))
    finally:
        cv2.ipp.setUseIPP(use_ipp)


def test_binarize_ties_at_the_median():
    two_levels = np.zeros((224, 224), dtype=np.float32)
    two_levels[:, :134] = 1  # 59.8% of the pixels at the maximum: the threshold is 1, yet they all stay 1
    assert np.array_equal(binarize_lvs(two_levels), two_levels)
    two_levels = 1 - two_levels  # 40.2% ones: threshold 0, pred > 0
    assert np.array_equal(binarize_lvs(two_levels), two_levels)
    three = np.zeros((224, 224))
    three[:, :70] = 2       # 31.25 %
    three[:, 70:160] = 1    # 40.2 %: the median (index 25088) falls here, so only the top level is kept
    assert np.array_equal(binarize_lvs(three), (three == 2).astype(float))


def test_binarize_integer_maps_do_not_wrap():
    heatmap = np.zeros((224, 224), dtype=np.uint8)  # already 224 x 224: no resize, still computed as float
    heatmap[:50, :50] = 200
    assert np.array_equal(binarize_lvs(heatmap), (heatmap > 0).astype(float))


def test_binarize_constant_maps_follow_lvs_arithmetic():
    # normalize_img leaves a constant map as is, then LVS takes 1 - (-h): 1 + h, all 1 when h >= 0.
    assert binarize_lvs(np.zeros((14, 14))).sum() == 224 * 224
    assert binarize_lvs(np.full((14, 14), -3.0)).sum() == 0
    with pytest.raises(NonFiniteError):
        binarize_lvs(np.full((14, 14), np.nan))


def test_flickr_consensus_one_versus_two_annotators():
    one = flickr_gt_map([(0, 0, 128, 256)])  # x in [0, 112), y in [0, 224)
    assert set(np.unique(one)) == {0.0, 0.5} and one[:, :112].min() == 0.5 and one[:, 112:].max() == 0
    two = flickr_gt_map([(0, 0, 128, 256), (64, 0, 256, 256)])  # x 56..112 marked twice
    assert two[0, 56:112].min() == 1.0 and two[0, :56].max() == 0.5 and two[0, 112:].min() == 0.5
    three = flickr_gt_map([(0, 0, 256, 256)] * 3)
    assert three.min() == 1.0  # 3 / 2 clipped at 1
    # Predicting x < 112: against one annotator 0.5 n / 0.5 n = 1; against two, per row
    # (56 * 0.5 + 56 * 1) / (56 * 0.5 + 56 * 1 + 112 * 0.5) = 84 / 140.
    box = np.zeros((224, 224))
    box[:, :112] = 1
    assert ciou(box, one) == 1.0
    assert ciou(box, two) == pytest.approx(84 / 140, abs=1e-15)


def test_vggss_ground_truth_accepts_real_file_quirks():
    gt = vggss_gt_map([[0.384375, 0.859375, 0.696875, -2.8823037615171176e16], [0.5, 0.5, 1, 1],
                       [0.00625, 0.015625, 0.00625, 0.015625]])
    # the first box clips to ymax 0 (empty), the last has zero width: only [112, 224)^2 remains.
    assert gt.sum() == 112 * 112 and gt[112:, 112:].min() == 1


def test_ciou_thresholds_are_floating_point_like_lvs():
    # 0.05 * 6 = 0.30000000000000004 > 0.3: a cIoU of 0.3 passes thresholds 0..0.25 only.
    s = localization_scores([0.3])
    assert s["ciou"] == 0.0 and s["mean_ciou"] == pytest.approx(30.0, abs=1e-12)
    assert s["auc"] == pytest.approx(100 * (0.25 + 0.05 * 0.5), abs=1e-12)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    values = np.random.default_rng(0).random(50)
    x = [0.05 * i for i in range(21)]
    rates = [np.sum(values >= t) / len(values) for t in x]
    assert localization_scores(values)["auc"] == 100 * sklearn_metrics.auc(x, rates)
    assert localization_scores([0.5, 0.49, float("nan")])["ciou"] == pytest.approx(100 / 3, abs=1e-12)


def test_ground_truth_heatmap_scores_100():
    boxes = [[0.1, 0.2, 0.6, 0.9], [0.05, 0.05, 0.95, 0.95]]
    for box in boxes:  # less and more than half of the frame
        gt = vggss_gt_map([box])
        assert ciou(binarize_lvs(gt), gt) == 1.0
    assert localization_scores([1.0, 1.0]) == {"ciou": 100.0, "auc": 100.0, "mean_ciou": 100.0}


# ------------------------------------------------------------------------------------------------------ AVQA

def _q(qid: int, scenario: str, kind: str, answer: str) -> AVQARecord:
    return AVQARecord("v", qid, (scenario, kind), "Is it?", (), answer)


def test_avqa_pooled_averages_duplicates_and_missing():
    records = [_q(1, "Audio", "Counting", "two"), _q(1, "Audio", "Counting", "two"),  # duplicate id, both scored
               _q(2, "Audio", "Comparative", "yes"), _q(3, "Audio", "Comparative", "no"),
               _q(4, "Visual", "Location", "left"), _q(5, "Audio-Visual", "Temporal", "Yes"),
               _q(6, "Audio-Visual", "Existential", "no")]
    preds = {"1": "two", "2": "no", "3": "no", "4": "left", "5": "yes", "999": "x"}  # 6 missing, 5 wrong case
    out = avqa_accuracy(records, preds)
    assert out == {"Audio/Counting": 100.0, "Audio/Comparative": 50.0, "Audio/Avg": 75.0,
                   "Visual/Location": 100.0, "Visual/Avg": 100.0, "Audio-Visual/Existential": 0.0,
                   "Audio-Visual/Temporal": 0.0, "Audio-Visual/Avg": 0.0, "Overall": 100 * 4 / 7}
    # Audio/Avg pools 3 of 4 (the mean of the two types is 75 too); one more wrong Comparative separates them:
    records.append(_q(7, "Audio", "Comparative", "no"))
    assert avqa_accuracy(records, preds)["Audio/Avg"] == 60.0  # 3 of 5; the mean of the types would be 66.7
    with pytest.raises(MetricInputError):
        avqa_accuracy([], {})


# ------------------------------------------------------------------------------------------------------ AVE

def test_ave_segment_accuracy_and_errors():
    truth = {"a": ["background"] * 6 + ["Church bell"] * 4, "b": ["Bark"] * 10}
    preds = {"a": ["background"] * 10, "b": ["Bark"] * 9 + ["background"], "c": ["x"] * 10}
    assert ave_segment_accuracy(truth, preds) == 100 * 15 / 20
    assert ave_segment_accuracy(truth, truth) == 100.0
    with pytest.raises(MetricInputError, match="no prediction for clip 'b'"):
        ave_segment_accuracy(truth, {"a": truth["a"]})
    with pytest.raises(MetricInputError, match="10 labels"):
        ave_segment_accuracy(truth, {"a": truth["a"], "b": ["Bark"] * 9})


def test_ave_cross_modal_exact_span_and_full_clips_skipped():
    masks = [[0, 0, 1, 1, 1, 0, 0, 0, 0, 0], [0] * 5 + [1] * 5, [1] * 10, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
    spans = [(2, 5), (4, 9), (0, 10), (1, 2)]  # exact, shifted by one, skipped, wrong start
    assert cross_modal_localization_accuracy(masks, spans) == 100 / 3
    # The window search: the lowest summed distance wins, the first on ties.
    d = np.ones((10, 3))
    d[4, 0] = d[5, 1] = d[6, 2] = 0
    assert best_window(d) == 4
    assert best_window(np.zeros((10, 3))) == 0
    with pytest.raises(MetricInputError, match="no event segment"):
        cross_modal_localization_accuracy([[0] * 10], [(0, 1)])
