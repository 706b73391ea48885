"""AVST, the audio-visual spatial-temporal model for MUSIC-AVQA (Li et al., CVPR 2022; ``AVQA_Fusion_Net`` in
GeWu-Lab/MUSIC-AVQA ``net_grd_avst/net_avst.py``).

- Question: word embeddings, tanh, an LSTM; its final hidden and cell states, concatenated, through tanh and a
  linear layer give the question vector. Tokens are padded ids (the reference pads to 14 with ``<pad>`` and runs
  the LSTM over the padding too; so does this module).
- Spatial grounding, per 1-s segment: the audio feature (two linear layers) attends over the L2-normalised
  cells of the visual map (softmax of cosine scores); the grounded vector and the map's global average,
  concatenated, through tanh and a linear layer, give the visual feature. A match head (MLP to 2 logits) tells
  whether audio and frames come from the same clip; negatives are frames of another clip (by default the next
  clip of the batch).
- Temporal grounding: the question attends over the audio and over the visual segments
  (:class:`xmodal.nn.fusion.CrossModalAttention`, pre-norm where the reference is post-norm); each result plus
  the segment mean, concatenated, through tanh and a linear layer, is multiplied with the question vector and
  classified over the answer vocabulary (42 answers on MUSIC-AVQA).

Additions (both optional, off by default, so the module with its defaults is the reference's):

- ``counting``: question-guided counting over the cells of each segment's map, ``sum_n sigmoid(<cell_n, g(q)>
  / sqrt(dim) + b)``: a sum of per-cell objectness for what the question asks about, which grows with the
  number of instances, where the softmax-weighted mean of spatial grounding does not;
- ``evidence_dim``: per-segment evidence ``(B, T, E)`` given by the caller (for MUSIC-AVQA, the encoders' class
  evidence for the objects the question names: :mod:`xmodal.tasks.avqa_evidence`).

The count and the evidence form one more stream: batch-normalised per feature (masses count cells, the rest
are probabilities), projected per segment, it gets its own question-guided
temporal attention (plus its mean, as the other two), and its :func:`clip_summary` (mean, maximum and soft
onset over the segments: what ``which sounds first`` needs) another projection; both join the fusion.

Official inputs: audio ``(B, 10, 128)`` VGGish, visual ``(B, 10, 512, 14, 14)`` ResNet-18 maps, question
``(B, 14)`` ids. :func:`avst_loss` is ``CE(answer) + 0.5 * CE(match)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.fusion import CrossModalAttention

__all__ = ["AVST", "QuestionEncoder", "avst_loss", "clip_summary"]


def clip_summary(stream: torch.Tensor) -> torch.Tensor:
    """``(B, T, F) -> (B, 3F)``: the mean and maximum over segments and the soft onset
    ``sum_t prod_{s <= t} (1 - clip(f_s, 0, 1)) / T`` (the expected fraction of the clip before the value
    first fires)."""
    not_yet = torch.cumprod(1 - stream.clamp(0, 1), dim=1)
    return torch.cat([stream.mean(1), stream.amax(1), not_yet.mean(1)], -1)


class QuestionEncoder(nn.Module):
    """``(B, L)`` token ids -> ``(B, dim)``: embedding, tanh, LSTM, ``tanh(cat(h, c))``, linear."""

    def __init__(self, vocab_size: int, word_dim: int = 512, hidden: int = 512, dim: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.lstm = nn.LSTM(word_dim, hidden, batch_first=True)
        self.fc = nn.Linear(2 * hidden, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.lstm(torch.tanh(self.embed(tokens)))
        return self.fc(torch.tanh(torch.cat([h[-1], c[-1]], dim=-1)))


class AVST(nn.Module):
    """``forward(audio (B, T, audio_dim), visual (B, T, C, H, W), question (B, L), visual_negative=None,
    acoustic=None, evidence=None)`` ->
    (``question_encoder`` replaces the reference's LSTM by any ``(B, L) ids -> (B, dim)`` module)
    ``{"answer_logits": (B, num_answers), "joint": (B, dim) (what the answer layer reads), "question": (B, dim),
    "match_positive": (B*T, 2), "match_negative": (B*T, 2),
    "spatial_attention": (B, T, H*W)}``."""

    def __init__(self, vocab_size: int, num_answers: int = 42, audio_dim: int = 128, visual_dim: int = 512,
                 dim: int = 512, heads: int = 4, acoustic_dim: int = 0,
                 question_encoder: nn.Module | None = None, counting: bool = False, evidence_dim: int = 0) -> None:
        super().__init__()
        self.audio_dim, self.visual_dim, self.dim, self.acoustic_dim = audio_dim, visual_dim, dim, acoustic_dim
        self.counting, self.evidence_dim = counting, evidence_dim
        # any module mapping (B, L) token ids to (B, dim); the reference's LSTM by default
        self.question = question_encoder or QuestionEncoder(vocab_size, dim, dim, dim)
        self.audio_proj = nn.Sequential(nn.Linear(audio_dim + acoustic_dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.visual_proj = nn.Linear(visual_dim, dim) if visual_dim != dim else nn.Identity()
        self.fc_gl = nn.Linear(2 * dim, dim)
        self.match = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim // 2), nn.ReLU(),
                                   nn.Linear(dim // 2, dim // 4), nn.ReLU(), nn.Linear(dim // 4, 2))
        self.attend_audio = CrossModalAttention(dim, dim, heads)
        self.attend_visual = CrossModalAttention(dim, dim, heads)
        stream = evidence_dim + int(counting)
        if counting:
            self.count_query = nn.Linear(dim, dim)
        if stream:
            self.evidence_norm = nn.BatchNorm1d(stream)
            self.summary_norm = nn.BatchNorm1d(3 * stream)
            self.evidence_proj = nn.Sequential(nn.Linear(stream, dim), nn.ReLU(), nn.Linear(dim, dim))
            self.summary_proj = nn.Sequential(nn.Linear(3 * stream, dim), nn.ReLU(), nn.Linear(dim, dim))
            self.attend_evidence = CrossModalAttention(dim, dim, heads)
        self.fc_fusion = nn.Linear((4 if stream else 2) * dim, dim)
        self.answer = nn.Linear(dim, num_answers)

    def _ground(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio-guided spatial grounding of each segment: ``(B*T, dim)`` features and ``(B*T, H*W)`` weights."""
        b, t, c, h, w = visual.shape
        cells = self.visual_proj(visual.reshape(b * t, c, h * w).transpose(1, 2))  # (B*T, HW, dim)
        global_feat = cells.mean(dim=1)
        cells = F.normalize(cells, dim=-1)
        weights = torch.einsum("nkc,nc->nk", cells, F.normalize(audio, dim=-1)).softmax(dim=-1)
        grounded = torch.einsum("nk,nkc->nc", weights, cells)
        return self.fc_gl(torch.tanh(torch.cat([global_feat, grounded], dim=-1))), weights

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, question: torch.Tensor,
                visual_negative: torch.Tensor | None = None,
                acoustic: torch.Tensor | None = None, evidence: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        b, t = audio.shape[:2]
        if audio.shape[2] != self.audio_dim or visual.dim() != 5 or visual.shape[:3] != (b, t, self.visual_dim):
            raise ShapeError(f"expected audio (B, T, {self.audio_dim}) and visual (B, T, {self.visual_dim}, H, W), "
                             f"got {tuple(audio.shape)} and {tuple(visual.shape)}", source="AVST")
        if visual_negative is None:
            if b < 2:
                raise ShapeError("negatives default to another clip of the batch: pass visual_negative for B = 1",
                                 source="AVST")
            visual_negative = visual.roll(1, dims=0)
        if self.acoustic_dim:
            if acoustic is None or acoustic.shape != (b, t, self.acoustic_dim):
                raise ShapeError(f"expected acoustic features (B, T, {self.acoustic_dim})", source="acoustic")
            audio = torch.cat([audio, acoustic], dim=-1)
        q = self.question(question)  # (B, dim)
        a = self.audio_proj(audio)  # (B, T, dim)
        a_flat = a.reshape(b * t, self.dim)
        v_pos, weights = self._ground(a_flat, visual)
        v_neg, _ = self._ground(a_flat, visual_negative)
        match_pos = self.match(torch.cat([a_flat, v_pos], dim=-1))
        match_neg = self.match(torch.cat([a_flat, v_neg], dim=-1))
        v_seq = v_pos.reshape(b, t, self.dim)
        audio_att = self.attend_audio(q[:, None], a)[:, 0] + a.mean(dim=1)
        visual_att = self.attend_visual(q[:, None], v_seq)[:, 0] + v_seq.mean(dim=1)
        parts = [audio_att, visual_att]
        streams = []
        if self.evidence_dim:
            if evidence is None or evidence.shape != (b, t, self.evidence_dim):
                raise ShapeError(f"expected evidence (B, T, {self.evidence_dim})", source="evidence")
            streams.append(evidence)
        if self.counting:
            cells = self.visual_proj(visual.reshape(b, t, self.visual_dim, -1).transpose(2, 3))  # (B, T, HW, dim)
            scores = torch.einsum("btnc,bc->btn", cells, self.count_query(q)) / self.dim ** 0.5
            streams.append(torch.sigmoid(scores).sum(-1, keepdim=True))
        if streams:
            e_in = torch.cat(streams, dim=-1)
            e = self.evidence_proj(self.evidence_norm(e_in.flatten(0, 1)).reshape(e_in.shape))
            summary = self.summary_proj(self.summary_norm(clip_summary(e_in)))
            parts += [self.attend_evidence(q[:, None], e)[:, 0] + e.mean(dim=1), summary]
        fused = self.fc_fusion(torch.tanh(torch.cat(parts, dim=-1)))
        joint = torch.tanh(fused * q)
        return {"answer_logits": self.answer(joint), "joint": joint, "question": q, "match_positive": match_pos,
                "match_negative": match_neg, "spatial_attention": weights.reshape(b, t, -1)}


def avst_loss(outputs: dict[str, torch.Tensor], answers: torch.Tensor, match_weight: float = 0.5) -> torch.Tensor:
    """``CE(answer_logits, answers) + match_weight * CE(match, positive = 1 / negative = 0)``, as main_avst.py."""
    pos, neg = outputs["match_positive"], outputs["match_negative"]
    match_logits = torch.cat([pos, neg])
    match_labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).long().to(pos.device)
    return F.cross_entropy(outputs["answer_logits"], answers) + match_weight * F.cross_entropy(match_logits,
                                                                                               match_labels)
