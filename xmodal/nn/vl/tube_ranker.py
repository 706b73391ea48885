"""A TubeDETR-style space-time decoder over candidate object tracks: per-frame boxes by ranking the candidate
boxes of each frame, and start/end logits.

TubeDETR (Yang et al. 2022) encodes each sampled frame's visual tokens jointly with the sentence, then decodes one
time-aligned query per frame (temporal self-attention, then cross-attention into that frame's memory) into a box
and start/end logits (:class:`xmodal.nn.vl.SpaceTimeDecoder`). Here a frame's visual tokens are its candidate
objects (a detector's and tracker's boxes, with appearance and motion features). They first attend along their
own track over time (so a token knows how its object moved before and after) and to the sentence's words, then
to each other together with the pooled sentence: TubeDETR's joint frame encoding with the words pooled into one
token, which keeps a CPU step cheap (the words are not repeated on every frame). Each query scores the
candidate tokens of its frame, a pointer as in MAttNet-style ranking; the box is the best candidate's (or, with
``regress=True``, a box regressed from the query as TubeDETR does).

Inputs: ``candidates`` ``(batch, T, K, F)`` features, ``candidate_mask`` ``(batch, T, K)`` True = the candidate
is on screen in that frame, ``text`` ``(batch, L, D)`` token states, ``text_mask`` ``(batch, L)``, ``time_mask``
``(batch, T)`` True = a real frame. Train with :func:`ranking_stvg_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.transformer import TransformerEncoder, sinusoidal_positions
from xmodal.nn.fusion import CrossModalAttention
from xmodal.nn.heads import BoxHead
from xmodal.nn.vl.tubedetr import _DecoderLayer, stvg_loss


class TubeRanker(nn.Module):
    time_pos: torch.Tensor

    def __init__(self, candidate_dim: int, text_dim: int = 384, dim: int = 64, track_depth: int = 1,
                 frame_depth: int = 1, decoder_depth: int = 2, heads: int = 4, max_frames: int = 200,
                 max_candidates: int = 16, max_tokens: int = 64, dropout: float = 0.0, regress: bool = False) -> None:
        super().__init__()
        self.candidate_proj = nn.Sequential(nn.Linear(candidate_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.words = TransformerEncoder(dim=dim, depth=1, heads=heads, in_dim=text_dim, max_len=max_tokens,
                                        dropout=dropout)
        self.register_buffer("time_pos", sinusoidal_positions(max_frames, dim)[None], persistent=False)
        self.track = TransformerEncoder(dim=dim, depth=track_depth, heads=heads, max_len=max_frames,
                                        positions="none", dropout=dropout)
        self.listen = CrossModalAttention(dim, dim, heads, dropout)
        self.frame = TransformerEncoder(dim=dim, depth=frame_depth, heads=heads, max_len=max_candidates + 1,
                                        positions="none", dropout=dropout)
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.layers = nn.ModuleList(_DecoderLayer(dim, heads, dropout) for _ in range(decoder_depth))
        self.norm = nn.LayerNorm(dim)
        self.score_q, self.score_k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.sted = nn.Linear(dim, 2)
        self.box = BoxHead(dim, hidden=dim) if regress else None
        self.max_frames, self.max_candidates = max_frames, max_candidates

    def forward(self, candidates: torch.Tensor, candidate_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor | None = None, time_mask: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """-> ``{"scores": (batch, T, K) candidate logits (-inf off screen), "sted": (batch, T, 2) start/end
        logits (-inf on padded frames)}``, and ``"boxes"`` (batch, T, 4) (cx, cy, w, h) with ``regress``."""
        if candidates.dim() != 4 or candidate_mask.shape != candidates.shape[:3] or text.dim() != 3:
            raise ShapeError(f"expected candidates (batch, T, K, F), their mask (batch, T, K) and text (batch, L, D), "
                             f"got {tuple(candidates.shape)}, {tuple(candidate_mask.shape)} and {tuple(text.shape)}",
                             "TubeRanker")
        b, t, k, _ = candidates.shape
        if t > self.max_frames or k > self.max_candidates:
            raise ShapeError(f"{t} frames / {k} candidates exceed max_frames={self.max_frames} / "
                             f"max_candidates={self.max_candidates}", "candidates")
        dev = candidates.device
        tm = torch.ones(b, t, dtype=torch.bool, device=dev) if time_mask is None else time_mask.bool()
        xm = torch.ones(text.shape[:2], dtype=torch.bool, device=dev) if text_mask is None else text_mask.bool()
        cm = candidate_mask.bool() & tm[..., None]
        words, sentence = self.words.forward_all(text, xm)  # (b, L, dim), (b, dim)
        h = self.candidate_proj(candidates) + self.time_pos[:, :t, None]  # (b, t, k, dim)
        # along each track over time, then to the words; a track never on screen attends to all its frames
        seq = h.permute(0, 2, 1, 3).reshape(b * k, t, -1)
        seen = cm.permute(0, 2, 1).reshape(b * k, t)
        seen = seen | ~seen.any(1, keepdim=True)
        seq = self.track.forward_all(seq, seen)[0]
        seq = self.listen(seq, words.repeat_interleave(k, dim=0), xm.repeat_interleave(k, dim=0))
        h = seq.reshape(b, k, t, -1).permute(0, 2, 1, 3)
        # within each frame: its candidates and the sentence (TubeDETR's joint encoding, the words pooled)
        tokens = torch.cat([h.reshape(b * t, k, -1), sentence.repeat_interleave(t, dim=0)[:, None]], dim=1)
        mask = torch.cat([cm.reshape(b * t, k), torch.ones(b * t, 1, dtype=torch.bool, device=dev)], dim=1)
        memory = self.frame.forward_all(tokens, mask)[0]  # (b*t, k + 1, dim)
        q = self.query.expand(b, t, -1) + sentence[:, None] + self.time_pos[:, :t]
        for layer in self.layers:
            q = layer(q, memory, mask, tm)
        q = self.norm(q)
        keys = self.score_k(memory[:, :k]).reshape(b, t, k, -1)
        scores = torch.einsum("btd,btkd->btk", self.score_q(q), keys) / math.sqrt(q.shape[-1])
        out = {"scores": scores.masked_fill(~cm, float("-inf")),
               "sted": self.sted(q).masked_fill(~tm[..., None], float("-inf"))}
        if self.box is not None:
            out["boxes"] = self.box(q)
        return out


def expected_boxes(scores: torch.Tensor, candidate_boxes: torch.Tensor) -> torch.Tensor:
    """``(batch, T, 4)``: the candidates' boxes ``(batch, T, K, 4)`` weighted by the softmax of ``scores``
    (frames without a candidate get zeros), a differentiable stand-in for the chosen box."""
    finite = torch.isfinite(scores).any(-1, keepdim=True)
    weights = torch.where(finite, scores, torch.zeros_like(scores)).softmax(-1) * finite
    return torch.einsum("btk,btkc->btc", weights, candidate_boxes)


def ranking_stvg_loss(outputs: dict[str, torch.Tensor], candidate_boxes: torch.Tensor, target: torch.Tensor,
                      boxes: torch.Tensor, span: torch.Tensor, time_mask: torch.Tensor | None = None,
                      rank_weight: float = 1.0, **weights: float) -> dict[str, torch.Tensor]:
    """TubeDETR's loss (:func:`xmodal.nn.vl.stvg_loss`: L1 + GIoU on the boxes inside the true span, KL on the
    start/end distributions) on the expected candidate box (or the regressed box, when the outputs hold
    ``"boxes"``), plus ``rank_weight`` x the cross-entropy of the true candidate on the frames where one matches
    the true box (``target`` (batch, T) its index, -1 elsewhere)."""
    scores = outputs["scores"]
    chosen = outputs["boxes"] if "boxes" in outputs else expected_boxes(scores, candidate_boxes)
    parts = stvg_loss({"boxes": chosen, "sted": outputs["sted"]}, boxes, span, time_mask, **weights)
    has = target >= 0
    rank = F.cross_entropy(scores[has], target[has]) if bool(has.any()) else scores.sum() * 0.0
    return {**parts, "loss": parts["loss"] + rank_weight * rank, "rank": rank}
