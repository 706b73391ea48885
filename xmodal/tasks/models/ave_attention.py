"""Audio-guided visual attention with audio and visual BiLSTMs for AVE (Tian et al., ECCV 2018; ``att_Net`` in
YapengTian/AVE-ECCV18 ``models.py``).

Per 1-s segment, the audio feature scores every cell of the visual grid (``h = w_h^T tanh(W_v v_i + W_g a)``,
softmax over the cells) and the visual feature is the attention-weighted sum of the cells. An audio BiLSTM and a
visual BiLSTM (``xmodal.nn`` :class:`BiLSTM`) run over the segments, their outputs are concatenated and a
segment classifier (:class:`SegmentClassifierHead`) gives 29 logits per segment (28 events + background).
The reference applies a softmax and MultiLabelSoftMarginLoss; this module returns logits, and
:func:`ave_loss` is that loss on the softmax (the head's hidden activation is GELU, the reference's ReLU).
Official features: audio ``(N, 10, 128)`` VGGish, visual ``(N, 10, 7, 7, 512)`` VGG-19 pool5 (channels last).
``acoustic_dim > 0`` (9 for :func:`xmodal.data.acoustic.segment_acoustic_features`) adds per-segment acoustic
descriptors (pitch, spectral shape, onsets) to the audio stream.

``evidence_dim > 0`` (not in the reference) adds the logits of a linear classifier of a per-segment evidence
vector to the BiLSTM classifier's (from raw scene clips: the encoders' aligned class evidence, see
:mod:`xmodal.tasks.ave`): a direct path that a few hundred clips suffice to fit, where the BiLSTM path alone
memorises them. With ``evidence_columns`` the evidence is ``(N, T, F, K)``, ``F`` features of each of ``K``
evidence classes, and :class:`xmodal.tasks.models.evidence.TiedEvidenceHead` scores it with one weight vector for every class: what makes an
event is learnt once, not per class, so that a class seen in a few training clips (or none) is still found.
``dropout`` applies to the BiLSTM classifier's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.rnn import BiLSTM
from xmodal.nn.heads import SegmentClassifierHead
from xmodal.tasks.models.evidence import TiedEvidenceHead

__all__ = ["AVEAttentionNet", "ave_loss"]


class AVEAttentionNet(nn.Module):
    """``forward(audio (N, T, audio_dim), visual (N, T, H, W, visual_dim), acoustic (N, T, acoustic_dim) | None,
    evidence (N, T, evidence_dim) | (N, T, evidence_dim, K) with evidence_columns | None)`` -> ``{"logits": (N, T, num_classes), "attention": (N, T, H * W)}``."""

    def __init__(self, audio_dim: int = 128, visual_dim: int = 512, grid_cells: int = 49, attention_dim: int = 512,
                 hidden: int = 128, num_classes: int = 29, head_hidden: int = 64, acoustic_dim: int = 0,
                 evidence_dim: int = 0, dropout: float = 0.0, evidence_columns: Sequence[int] | None = None) -> None:
        super().__init__()
        self.audio_dim, self.visual_dim, self.grid_cells, self.acoustic_dim = audio_dim, visual_dim, grid_cells, acoustic_dim
        self.affine_audio = nn.Linear(audio_dim, attention_dim)
        self.affine_video = nn.Linear(visual_dim, attention_dim)
        # As the reference: both projections map to one score per grid cell, then w_h mixes them.
        self.affine_v = nn.Linear(attention_dim, grid_cells, bias=False)
        self.affine_g = nn.Linear(attention_dim, grid_cells, bias=False)
        self.affine_h = nn.Linear(grid_cells, 1, bias=False)
        self.lstm_audio = BiLSTM(audio_dim + acoustic_dim, hidden)
        self.lstm_video = BiLSTM(visual_dim, hidden)
        self.evidence_dim = evidence_dim
        self.dropout = nn.Dropout(dropout)
        self.head = SegmentClassifierHead(4 * hidden, num_classes, hidden=head_hidden)
        self.evidence_columns = 0  # tied: the evidence needs more columns than the highest one named
        self.evidence_head: nn.Module | None = None
        if evidence_dim and evidence_columns is not None:
            if len(evidence_columns) != num_classes:
                raise ShapeError(f"evidence_columns: one per class ({num_classes}), got {len(evidence_columns)}",
                                 source="AVEAttentionNet")
            tied = TiedEvidenceHead(evidence_dim, evidence_columns)
            self.evidence_columns, self.evidence_head = tied.width, tied
        elif evidence_dim:
            self.evidence_head = nn.Linear(evidence_dim, num_classes)
        for layer in (self.affine_audio, self.affine_video, self.affine_v, self.affine_g, self.affine_h):
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, acoustic: torch.Tensor | None = None,
                evidence: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        n, t = audio.shape[:2]
        if audio.shape[2:] != (self.audio_dim,) or visual.dim() != 5 or visual.shape[:2] != (n, t) \
                or visual.shape[2] * visual.shape[3] != self.grid_cells or visual.shape[4] != self.visual_dim:
            raise ShapeError(f"expected audio (N, T, {self.audio_dim}) and visual (N, T, H, W, {self.visual_dim}) "
                             f"with H * W = {self.grid_cells}, got {tuple(audio.shape)} and {tuple(visual.shape)}",
                             source="AVEAttentionNet")
        cells = visual.reshape(n * t, self.grid_cells, self.visual_dim)  # (N*T, cells, C)
        v = F.relu(self.affine_video(cells))
        a = F.relu(self.affine_audio(audio.reshape(n * t, self.audio_dim)))
        scores = self.affine_h(torch.tanh(self.affine_v(v) + self.affine_g(a).unsqueeze(2))).squeeze(2)
        attention = scores.softmax(dim=-1)  # (N*T, cells)
        attended = torch.bmm(attention.unsqueeze(1), cells).reshape(n, t, self.visual_dim)
        if self.acoustic_dim:
            if acoustic is None or acoustic.shape != (n, t, self.acoustic_dim):
                raise ShapeError(f"expected acoustic features (N, T, {self.acoustic_dim})", source="acoustic")
            audio = torch.cat([audio, acoustic], dim=-1)
        audio_seq, _ = self.lstm_audio.forward_all(audio)
        video_seq, _ = self.lstm_video.forward_all(attended)
        logits = self.head(self.dropout(F.relu(torch.cat([audio_seq, video_seq], dim=-1))))
        if self.evidence_head is not None:
            tied = self.evidence_columns > 0
            if evidence is None or evidence.shape[:3] != (n, t, self.evidence_dim) or evidence.dim() != 3 + tied \
                    or (tied and evidence.shape[3] < self.evidence_columns):
                shape = f"{self.evidence_dim}, >= {self.evidence_columns}" if tied else f"{self.evidence_dim}"
                raise ShapeError(f"expected evidence (N, T, {shape})", source="evidence")
            logits = logits + self.evidence_head(evidence)
        return {"logits": logits, "attention": attention.reshape(n, t, self.grid_cells)}


def ave_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MultiLabelSoftMarginLoss on the per-segment softmax, as supervised_main.py; ``labels`` are class indices
    ``(N, T)`` or one-hot ``(N, T, C)``."""
    if labels.dim() == logits.dim() - 1:
        labels = F.one_hot(labels.long(), logits.shape[-1]).to(logits.dtype)
    probs = logits.softmax(dim=-1)
    return nn.functional.multilabel_soft_margin_loss(probs.reshape(-1, probs.shape[-1]),
                                                     labels.reshape(-1, labels.shape[-1]))
