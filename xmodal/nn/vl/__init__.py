"""Reference models of the survey's vision-language tasks, composed from xmodal's building blocks and sized by
their arguments: TransVG-style and MAttNet-style (candidate ranking) grounding, weakly supervised grounding
by text-to-region attention, CTRL and a proposal-free boundary regressor for temporal localisation,
EVE-style entailment, a TubeDETR-style space-time decoder (regressing boxes, or ranking candidate tracks) and the mixture of embedding experts. Plain
``nn.Module`` s; no training loops."""

from xmodal.nn.vl.boundary import BoundaryRegressor, boundary_loss
from xmodal.nn.vl.boxes import box_regression_loss, generalized_box_iou
from xmodal.nn.vl.ctrl import CTRL, ctrl_loss
from xmodal.nn.vl.eve import EVE
from xmodal.nn.vl.mee import MEE, max_margin_ranking_loss
from xmodal.nn.vl.ranking import CandidateRanker, PhraseAttention, candidate_loss, roi_align
from xmodal.nn.vl.transvg import TransVG
from xmodal.nn.vl.tube_ranker import TubeRanker, expected_boxes, ranking_stvg_loss
from xmodal.nn.vl.tubedetr import SpaceTimeDecoder, stvg_loss
from xmodal.nn.vl.weak import TextRegionAttention, image_expression_loss, referent_contrast_loss

__all__ = [
    "CTRL",
    "EVE",
    "MEE",
    "BoundaryRegressor",
    "CandidateRanker",
    "PhraseAttention",
    "SpaceTimeDecoder",
    "TextRegionAttention",
    "TransVG",
    "TubeRanker",
    "boundary_loss",
    "box_regression_loss",
    "candidate_loss",
    "ctrl_loss",
    "expected_boxes",
    "generalized_box_iou",
    "image_expression_loss",
    "max_margin_ranking_loss",
    "ranking_stvg_loss",
    "referent_contrast_loss",
    "roi_align",
    "stvg_loss",
]
