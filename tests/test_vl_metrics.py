"""Vision-language benchmark metrics against hand-worked values and the official code's edge cases: MAttNet's
inclusive-pixel IoU, TorchRay's pointing game, TALL's IoU and temporal NMS, TubeDETR's frame sampling and vIoU,
and VSE++ / CLIP4Clip ranks (their argsort procedures transcribed below as the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.errors import MetricInputError, ShapeError
from xmodal.metrics.entailment import entailment_accuracy
from xmodal.metrics.grounding import box_iou_inclusive, pointing_game, rec_accuracy
from xmodal.metrics.retrieval import ranks_any_positive, retrieval_metrics, text_item_retrieval
from xmodal.metrics.stvg import TubeTarget, box_iou_xyxy, hcstvg_frame_ids, sample_frame_ids, stvg_metrics
from xmodal.metrics.temporal import nms_temporal, temporal_grounding_metrics, temporal_iou

# ---- grounding ------------------------------------------------------------------------------------------------


def test_mattnet_iou_inclusive_pixels():
    assert box_iou_inclusive([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    # pixels 5..9 overlap in x and y: 25 of 100 + 100 - 25
    assert box_iou_inclusive([0, 0, 10, 10], [5, 5, 10, 10]) == 25 / 175
    # a one-pixel-wide overlap (x1 == x2) is no overlap at all: the strict x1 < x2 test
    assert box_iou_inclusive([0, 0, 10, 10], [9, 0, 10, 10]) == 0.0
    # boxes that touch share no pixel
    assert box_iou_inclusive([0, 0, 10, 10], [10, 0, 10, 10]) == 0.0
    # fractional coordinates: overlap (9 - 0.5 + 1) ** 2 = 90.25, union 200 - 90.25
    assert box_iou_inclusive([0.5, 0.5, 10, 10], [0, 0, 10, 10]) == 90.25 / 109.75


def test_rec_accuracy_threshold_and_missing():
    targets = {1: [0, 0, 10, 10], 2: [0, 0, 10, 10], 3: [50, 50, 4, 4]}
    # sentence 1: IoU exactly 100 / 200 = 0.5 is a hit; 2: IoU 1/7 a miss; 3: no prediction, a miss
    preds = {1: [0, 0, 10, 20], 2: [5, 5, 10, 10]}
    assert rec_accuracy(preds, targets) == {"accuracy": 100 / 3, "n": 3}
    assert rec_accuracy(targets, targets)["accuracy"] == 100.0


def test_pointing_game_tolerance_is_strict():
    heat = np.zeros((4, 50, 50), dtype=np.float32)
    heat[:, 20, 20] = 1.0
    masks = np.zeros((4, 50, 50), dtype=bool)
    masks[0, 20, 35] = True  # distance 15: 225 is not < 225, a miss
    masks[1, 20, 34] = True  # 196 < 225, a hit
    masks[2, 29, 31] = True  # 81 + 121 = 202, a hit
    masks[3, 32, 29] = True  # 144 + 81 = 225, a miss
    out = pointing_game(heat, masks)
    assert out == {"accuracy": 50.0, "hits": 2, "misses": 2}
    assert pointing_game(heat, masks, tolerance=16)["hits"] == 4
    assert pointing_game(torch.from_numpy(heat), torch.from_numpy(masks)) == out


def test_pointing_game_first_maximum_and_empty_mask():
    heat = np.zeros((3, 40, 60))
    heat[:, 0, 50] = 2.0  # row-major first maximum
    heat[:, 39, 0] = 2.0
    masks = np.zeros((3, 40, 60), dtype=bool)
    masks[0, 0, 45] = True  # near the first maximum
    masks[1, 39, 3] = True  # near the second one only: a miss
    # masks[2] empty: a miss
    assert pointing_game(heat, masks) == {"accuracy": 100 / 3, "hits": 1, "misses": 2}
    with pytest.raises(ShapeError):
        pointing_game(heat, masks[:, :, :59])
    with pytest.raises(MetricInputError, match="boolean"):
        pointing_game(heat, masks.astype(np.uint8))


def test_entailment_accuracy():
    gold = {"a": "entailment", "b": "neutral", "c": "contradiction", "d": "neutral"}
    assert entailment_accuracy({"a": "entailment", "b": "contradiction", "c": "contradiction"}, gold) == {
        "accuracy": 50.0}
    assert entailment_accuracy(gold, gold) == {"accuracy": 100.0}
    with pytest.raises(MetricInputError, match="'maybe'"):
        entailment_accuracy({"a": "maybe"}, gold)
    with pytest.raises(MetricInputError, match="not in the annotations"):
        entailment_accuracy({"z": "neutral"}, gold)


# ---- temporal grounding (TALL) ---------------------------------------------------------------------------------


def test_tall_iou_formula():
    assert temporal_iou((0, 10), (5, 15)) == 5 / 15
    assert temporal_iou((0, 2), (5, 6)) == -0.5  # disjoint: negative, as TALL computes it
    # exactly 0.5 on paper, but TALL's (0.3 - 0.1) / (0.4 - 0.0) is 0.49999999999999994: not a hit at 0.5
    assert temporal_iou((0.0, 0.3), (0.1, 0.4)) == 0.49999999999999994
    out = temporal_grounding_metrics([(0.0, 0.3)], [[(0.1, 0.4)]])
    assert out["R@1,IoU=0.3"] == 100.0 and out["R@1,IoU=0.5"] == 0.0


def test_tall_nms_ties_and_threshold_equality():
    # equal scores: a stable ascending sort taken from the end picks the later-listed segment
    assert nms_temporal([(0, 10), (0, 10)], [0.5, 0.5], 0.25) == [1]
    # overlap of (0, 3) and (2, 4) is 1 / (3 + 2 - 1) = 0.25: kept at 0.3 - 0.05, which is exactly 0.25 (<=)
    assert nms_temporal([(0, 3), (2, 4)], [0.9, 0.1], 0.3 - 0.05) == [0, 1]
    # overlap of (0, 20) and (7, 20) is 13 / 20 = 0.65: kept at threshold 0.65, but suppressed at 0.7 - 0.05,
    # which is 0.6499999999999999 in floating point
    assert nms_temporal([(0, 20), (7, 20)], [0.9, 0.1], 0.65) == [0, 1]
    assert nms_temporal([(0, 20), (7, 20)], [0.9, 0.1], 0.7 - 0.05) == [0]
    out = temporal_grounding_metrics([(7, 20)], [[(0, 20), (7, 20)]], [[0.9, 0.1]], nms=True)
    assert out["R@5,IoU=0.7"] == 0.0 and out["R@5,IoU=0.5"] == 100.0


def test_tall_recall_hand_worked():
    gt = [(0, 10), (0, 10), (0, 10)]
    segments = [[(20, 30), (0, 5), (0, 10)], [(0, 5), (0, 7)], []]
    scores = [[0.9, 0.8, 0.8], [0.5, 0.5], []]
    plain = temporal_grounding_metrics(gt, segments)
    # query 1 ranks (20, 30) first (IoU -1/3) and finds (0, 10) in its top 5; query 2's top-1 (0, 5) has IoU 0.5
    # (a hit at 0.5, equality counts) and its top 5 reaches (0, 7) at exactly 0.7; query 3 has no segment
    assert plain == {"R@1,IoU=0.3": 100 / 3, "R@1,IoU=0.5": 100 / 3, "R@1,IoU=0.7": 0.0,
                     "R@5,IoU=0.3": 200 / 3, "R@5,IoU=0.5": 200 / 3, "R@5,IoU=0.7": 200 / 3,
                     "mIoU": 100 * 0.5 / 3}
    nms = temporal_grounding_metrics(gt, segments, scores, nms=True)
    # with NMS query 2's tie goes to the later (0, 7): IoU 0.7 at rank 1, and mIoU takes it
    assert nms == {"R@1,IoU=0.3": 100 / 3, "R@1,IoU=0.5": 100 / 3, "R@1,IoU=0.7": 100 / 3,
                   "R@5,IoU=0.3": 200 / 3, "R@5,IoU=0.5": 200 / 3, "R@5,IoU=0.7": 200 / 3,
                   "mIoU": 100 * 0.7 / 3}
    with pytest.raises(MetricInputError, match="scores"):
        temporal_grounding_metrics(gt, segments, None, nms=True)


def test_tall_ground_truth_scores_100():
    gt = [(0.0, 6.9), (24.3, 30.4), (1.5, 2.25)]
    out = temporal_grounding_metrics(gt, [[g] for g in gt], [[1.0]] * 3, nms=True)
    assert all(v == 100.0 for v in out.values())


# ---- STVG (TubeDETR) -----------------------------------------------------------------------------------------


def test_tubedetr_frame_sampling():
    # 500 frames in 20 s are 25 fps: every fifth frame of 0 .. 498
    assert hcstvg_frame_ids(500) == list(range(0, 499, 5))
    # 3,000 frames at 25 fps give 600 frames at 5 fps; at most 200 keep every third: frames 0, 15, 30, ...
    assert sample_frame_ids(0, 3000, 25) == list(range(0, 3000, 15))
    # floating point as TubeDETR computes it: at 104 frames the rate is 5 / 5.2 = 0.9615384615384615 and
    # 26 * rate = 24.999999999999996 truncates to 24, frame 25's step, so frame 26 is skipped (exactly, 26 * 25 / 26
    # is 25 and it would be taken)
    frames = hcstvg_frame_ids(104)
    assert 25 in frames and 26 not in frames and 27 in frames and len(frames) == 99
    # a segment that starts later is sampled from its own first frame
    assert sample_frame_ids(7, 20, 25) == [7, 10, 15]
    with pytest.raises(MetricInputError, match="downsamples"):
        hcstvg_frame_ids(60)  # 3 fps cannot be sampled at 5


def _target() -> TubeTarget:
    frames = hcstvg_frame_ids(500)
    return TubeTarget("clip.mp4", frames, 100, 150, {f: (10.0, 10.0, 30.0, 30.0) for f in frames if 100 <= f < 150},
                      500)


def test_viou_hand_worked():
    exact = {f: [10, 10, 30, 30] for f in range(120, 170)}
    exact[125] = [10, 10, 20, 30]  # half the true box: IoU 200 / 400
    del exact[130]  # a sampled frame inside both spans without a box counts 0
    out = stvg_metrics([_target()], {"clip.mp4": exact})
    # spans [100, 150) and [120, 170): tIoU 30 / 70; union holds 14 sampled frames (100 .. 165), the
    # intersection 6 (120 .. 145) of which 4 score 1, frame 125 scores 0.5 and frame 130 scores 0
    assert out["m_tIoU"] == pytest.approx(100 * 3 / 7, abs=1e-12)
    assert out["m_vIoU"] == pytest.approx(100 * 4.5 / 14, abs=1e-12)
    assert out["vIoU@0.3"] == 100.0 and out["vIoU@0.5"] == 0.0


def test_viou_no_temporal_overlap_and_no_prediction():
    late = {f: [10, 10, 30, 30] for f in range(200, 250)}
    assert stvg_metrics([_target()], {"clip.mp4": late}) == {"m_tIoU": 0.0, "m_vIoU": 0.0, "vIoU@0.3": 0.0,
                                                              "vIoU@0.5": 0.0}
    assert stvg_metrics([_target()], {})["m_vIoU"] == 0.0
    with pytest.raises(MetricInputError, match="not in the annotations"):
        stvg_metrics([_target()], {"other.mp4": late})
    with pytest.raises(MetricInputError, match="outside"):
        stvg_metrics([_target()], {"clip.mp4": {500: [0, 0, 1, 1]}})


def test_viou_threshold_is_strict_and_touching_boxes_score_zero():
    half = {f: [10, 10, 20, 30] for f in range(100, 150)}  # IoU 0.5 on every frame, exact span
    out = stvg_metrics([_target()], {"clip.mp4": half})
    assert out["m_vIoU"] == 50.0 and out["m_tIoU"] == 100.0
    assert out["vIoU@0.5"] == 0.0 and out["vIoU@0.3"] == 100.0  # 0.5 is not > 0.5
    # a box touching the true box's border (and the image's left border) shares no area
    assert box_iou_xyxy([0, 10, 10, 30], [10, 10, 30, 30]) == 0.0
    touching = {f: [0, 10, 10, 30] for f in range(100, 150)}
    assert stvg_metrics([_target()], {"clip.mp4": touching})["m_vIoU"] == 0.0


def test_stvg_ground_truth_scores_100():
    t = _target()
    gt = {f: [10, 10, 30, 30] for f in range(100, 150)}  # every tube frame, sampled or not
    assert stvg_metrics([t], {t.key: gt}) == {"m_tIoU": 100.0, "m_vIoU": 100.0, "vIoU@0.3": 100.0,
                                              "vIoU@0.5": 100.0}


# ---- retrieval -----------------------------------------------------------------------------------------------


def _vsepp_i2t(sims: np.ndarray) -> np.ndarray:
    """VSE++ evaluation.py i2t: images x 5N captions, rank = best position of the image's five captions."""
    ranks = np.zeros(sims.shape[0])
    for index in range(sims.shape[0]):
        inds = np.argsort(sims[index])[::-1]
        rank = 1e20
        for i in range(5 * index, 5 * index + 5):
            tmp = np.where(inds == i)[0][0]
            rank = min(rank, tmp)
        ranks[index] = rank
    return ranks


def _vsepp_t2i(sims: np.ndarray) -> np.ndarray:
    """VSE++ t2i on the (images, captions) matrix: caption 5i + j looks for image i."""
    ranks = np.zeros(sims.shape[1])
    for index in range(sims.shape[0]):
        for i in range(5):
            inds = np.argsort(sims[:, 5 * index + i])[::-1]
            ranks[5 * index + i] = np.where(inds == index)[0][0]
    return ranks


def test_any_of_five_matches_vsepp_without_ties():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(40, 200))  # (images, captions): continuous, so no ties
    caption_item = [c // 5 for c in range(200)]
    i2t = ranks_any_positive(sims, [list(range(5 * i, 5 * i + 5)) for i in range(40)])
    np.testing.assert_array_equal(i2t, _vsepp_i2t(sims))
    t2i = ranks_any_positive(sims.T, [[i] for i in caption_item])
    np.testing.assert_array_equal(t2i, _vsepp_t2i(sims))
    both = text_item_retrieval(sims.T, caption_item, ("t2i", "i2t"), floor_median=True)
    for name, r in (("i2t", _vsepp_i2t(sims)), ("t2i", _vsepp_t2i(sims))):
        # VSE++: r1 = 100.0 * len(np.where(ranks < 1)[0]) / len(ranks), medr = np.floor(np.median(ranks)) + 1
        for k in (1, 5, 10):
            assert both[f"{name}_R@{k}"] == 100.0 * len(np.where(r < k)[0]) / len(r)
        assert both[f"{name}_MedR"] == np.floor(np.median(r)) + 1
        assert both[f"{name}_MeanR"] == pytest.approx(r.mean() + 1, abs=1e-12)


def test_any_of_five_with_tied_scores():
    # one image, captions 0-4 correct; the best correct score 0.5 ties two wrong captions, one wrong beats it
    row = np.array([[0.1, 0.5, 0.3, 0.2, 0.0, 0.5, 0.9, 0.2, 0.5, 0.1]])
    correct = [[0, 1, 2, 3, 4]]
    assert ranks_any_positive(row, correct, "pessimistic").tolist() == [3]  # 0.9, 0.5, 0.5 ahead
    assert ranks_any_positive(row, correct, "optimistic").tolist() == [1]  # strictly greater: 0.9 only
    # a constant model can not score: every wrong item ties the right ones and ranks ahead
    flat = np.zeros((1, 10))
    assert ranks_any_positive(flat, correct, "pessimistic").tolist() == [5]


def test_single_positive_equals_square_protocol():
    rng = np.random.default_rng(1)
    sim = rng.normal(size=(30, 30)).round(1)  # rounded: ties happen
    out = text_item_retrieval(sim, list(range(30)), ("t2v", "v2t"))
    assert {k[4:]: v for k, v in out.items() if k.startswith("t2v")} == retrieval_metrics(sim)
    assert {k[4:]: v for k, v in out.items() if k.startswith("v2t")} == retrieval_metrics(sim.T)
