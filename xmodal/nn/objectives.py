"""Training objectives: cross-entropy, symmetric InfoNCE (CLIP) with a learnable temperature and a gather across
ranks, VATT's multi-modal NCE (NCE for video-audio, MIL-NCE for video-text), and MAE-style masked reconstruction.

Embeddings passed to the contrastive losses must already be L2-normalised (``ContrastiveModel`` does it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import NonFiniteError, ShapeError


# ----------------------------------------------------------------------------------------------- cross-entropy
def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy for ``logits`` ``(batch, classes)`` or ``(batch, segments, classes)`` (per-segment labels,
    e.g. AVE) against integer ``target`` ``(batch)`` / ``(batch, segments)``; ``ignore_index`` marks unlabelled
    segments. Raises ShapeError on mismatched shapes and NonFiniteError on NaN/inf logits."""
    if logits.dim() not in (2, 3) or target.shape != logits.shape[:-1]:
        raise ShapeError(
            f"logits {tuple(logits.shape)} need target of shape {tuple(logits.shape[:-1])}, "
            f"got {tuple(target.shape)}",
            source="cross_entropy",
        )
    if not torch.isfinite(logits).all():
        raise NonFiniteError("logits hold NaN or inf", source="cross_entropy")
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1).long(),
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy`."""

    def __init__(self, ignore_index: int = -100, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            logits, target, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing
        )


# ------------------------------------------------------------------------------------------- temperature
class LogitScale(nn.Module):
    """CLIP's learnable inverse temperature: a log-parameter initialised to log(1/0.07), used as
    ``exp(param)`` clamped at ``max_scale`` = 100 (Radford et al. 2021, section 2.5)."""

    def __init__(
        self, init_temperature: float = 0.07, max_scale: float = 100.0, learnable: bool = True
    ) -> None:
        super().__init__()
        value = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)
        self.max_scale = max_scale

    def forward(self) -> torch.Tensor:
        """The scale as a 0-d tensor."""
        return self.log_scale.exp().clamp(max=self.max_scale)


# ------------------------------------------------------------------------------------------- gather
def _distributed() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``x`` ``(n, ...)`` from every rank along dim 0, keeping the autograd graph (its backward sums
    the gradients of every rank's copy back onto the owner). Returns the result and the row where this rank's
    rows start. Ranks may hold different ``n`` (rows are padded for the collective and cut afterwards).
    Local (``x``, 0) when torch.distributed is not initialised."""
    if not _distributed():
        return x, 0
    import warnings

    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn

    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))  # all_gather needs equal shapes
    counts = [int(c) for c in sizes]
    longest = max(counts)
    padded = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])]) if x.shape[0] < longest else x
    with warnings.catch_warnings():
        # Deprecated in favour of a private API (_functional_collectives); this one is public and works on gloo.
        warnings.simplefilter("ignore", FutureWarning)
        parts = dist_fn.all_gather(padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)], dim=0), sum(counts[:rank])


# ------------------------------------------------------------------------------------------- InfoNCE
def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str, check_finite: bool = True) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ShapeError(
            f"expected two (batch, dim) embeddings of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}",
            source=name,
        )
    # On an accelerator this reads a flag back to the host (a synchronisation): the trainer skips it and checks
    # the step's loss once instead (a NaN embedding makes the loss NaN).
    if check_finite and not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise NonFiniteError("embeddings hold NaN or inf", source=name)


def _symmetric_ce(
    a: torch.Tensor, b: torch.Tensor, all_a: torch.Tensor, all_b: torch.Tensor, offset: int,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """``(CE(s * a @ all_b.T, i + offset) + CE(s * b @ all_a.T, i + offset)) / 2`` over this rank's rows ``i``."""
    labels = torch.arange(a.shape[0], device=a.device) + offset
    if all_a is a and all_b is b:  # nothing gathered: the second logits matrix is the first one transposed
        logits = logit_scale * a @ b.T  # (n, n)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    logits_a = logit_scale * a @ all_b.T  # (n, world * n)
    logits_b = logit_scale * b @ all_a.T  # (n, world * n)
    return (F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_b, labels)) / 2


def info_nce(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float, *, gather: bool = True,
    check_finite: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP: ``(CE(s * a @ b.T, i) + CE(s * b @ a.T, i)) / 2`` where pair ``i`` is positive.

    ``a``, ``b``: this rank's L2-normalised embeddings ``(n, dim)``, row ``i`` of each forming a pair.
    With ``gather`` and torch.distributed initialised, the other side's embeddings of every rank join as negatives
    (gathered with gradients) and the positive of local row ``i`` is its global row (``rank * n + i`` for equal
    ``n``): this is open_clip's ``ClipLoss(local_loss=True, gather_with_grad=True)``. With equal ``n`` on every
    rank, the mean of the per-rank losses equals the full-batch loss and DDP's gradient averaging yields the
    full-batch gradient (for unequal ``n``, weight each rank's loss by ``world * n / N``).
    ``check_finite=False`` skips the NaN/inf check of the embeddings (a host synchronisation on accelerators).
    """
    _check_pair(a, b, "info_nce", check_finite)
    if gather:
        all_a, offset = gather_with_grad(a)
        all_b, _ = gather_with_grad(b)
    else:
        all_a, all_b, offset = a, b, 0
    return _symmetric_ce(a, b, all_a, all_b, offset, logit_scale)


def pairwise_info_nce(
    embeddings: dict[str, torch.Tensor],
    logit_scale: torch.Tensor | float,
    *,
    gather: bool = True,
    weights: dict[tuple[str, str], float] | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Mean (or ``weights``-weighted sum) of :func:`info_nce` over every pair of modalities in ``embeddings``
    (VATT/ImageBind-style alignment of three or more modalities). Keys may be ``"image"`` or ``"image_emb"``.

    Each modality is gathered across ranks once, not once per pair it belongs to (M gathers instead of
    M * (M - 1)); the value and gradients are those of the per-pair :func:`info_nce` sum."""
    names = list(embeddings)
    if len(names) < 2:
        raise ShapeError(
            f"need embeddings of at least two modalities, got {names}", source="pairwise_info_nce"
        )
    pairs = []
    for x, y in combinations(names, 2):
        w = 1.0 if weights is None else weights.get((x, y), weights.get((y, x), 0.0))
        if w:
            _check_pair(embeddings[x], embeddings[y], f"pairwise_info_nce[{x}, {y}]", check_finite)
            pairs.append((x, y, w))
    used = {m for x, y, _ in pairs for m in (x, y)}
    gathered = {m: gather_with_grad(embeddings[m]) if gather else (embeddings[m], 0) for m in names if m in used}
    total, count = embeddings[names[0]].new_zeros(()), 0.0  # a tensor even when every weight is zero
    for x, y, w in pairs:
        (all_x, offset), (all_y, _) = gathered[x], gathered[y]
        total = total + w * _symmetric_ce(embeddings[x], embeddings[y], all_x, all_y, offset, logit_scale)
        count += w
    return total / count if weights is None else total


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE owning its :class:`LogitScale`, for models that do not carry one."""

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0, gather: bool = True) -> None:
        super().__init__()
        self.logit_scale = LogitScale(init_temperature, max_scale)
        self.gather = gather

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return info_nce(a, b, self.logit_scale(), gather=self.gather)


# ------------------------------------------------------------------------------------------- VATT
def mil_nce(video: torch.Tensor, text: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """MIL-NCE (Miech et al. 2020, as in their reference ``MILNCELoss``): ``video`` ``(n, dim)``, ``text``
    ``(n, k, dim)`` holding ``k`` candidate positives per video (e.g. neighbouring narrations).

    loss_i = logsumexp over {x[i, j, :], x[j, i, :] for all j} - logsumexp over x[i, i, :], with
    ``x[i, j, c] = video_i . text_{j,c} / temperature``; the mean over ``i``.
    """
    if (
        video.dim() != 2
        or text.dim() != 3
        or text.shape[0] != video.shape[0]
        or text.shape[2] != video.shape[1]
    ):
        raise ShapeError(
            f"expected video (n, dim) and text (n, k, dim), got {tuple(video.shape)} and {tuple(text.shape)}",
            source="mil_nce",
        )
    n, k, _ = text.shape
    x = (video @ text.reshape(n * k, -1).T / temperature).view(n, n, k)  # (video i, text group j, candidate)
    positives = torch.logsumexp(x.diagonal(dim1=0, dim2=1).T, dim=1)  # (n,) over x[i, i, :]
    denominator = torch.logsumexp(torch.cat([x, x.transpose(0, 1)], dim=1).reshape(n, -1), dim=1)  # (n,)
    return (denominator - positives).mean()


@dataclass
class VattLossOutput:
    loss: torch.Tensor
    nce_va: torch.Tensor
    mil_nce_vt: torch.Tensor


def vatt_loss(
    video_va: torch.Tensor,
    audio_va: torch.Tensor,
    video_vt: torch.Tensor,
    text_vt: torch.Tensor,
    *,
    temperature: float = 0.07,
    text_weight: float = 1.0,
    gather: bool = True,
) -> VattLossOutput:
    """VATT's multi-modal objective (Akbari et al. 2021, eq. 3-5): ``NCE(video, audio) + text_weight *
    MIL-NCE(video, text)``, each in its own common space (``*_va``: video-audio space, ``*_vt``: video-text
    space). ``text_vt`` is ``(n, dim)`` or ``(n, k, dim)`` with ``k`` candidate captions per clip.
    NCE is the symmetric InfoNCE at fixed temperature ``temperature`` (0.07 in VATT)."""
    nce = info_nce(video_va, audio_va, 1.0 / temperature, gather=gather)
    text = text_vt if text_vt.dim() == 3 else text_vt[:, None, :]
    if gather:
        video_all, _ = gather_with_grad(video_vt)
        text_all, _ = gather_with_grad(text)
    else:
        video_all, text_all = video_vt, text
    mil = mil_nce(video_all, text_all, temperature)
    return VattLossOutput(nce + text_weight * mil, nce, mil)


# ------------------------------------------------------------------------------------------- masked reconstruction
@dataclass
class RandomMasking:
    """Result of :func:`random_masking`: ``mask`` ``(batch, length)`` bool, True = masked (to reconstruct);
    ``ids_keep`` ``(batch, n_keep)`` the visible positions in shuffled order; ``ids_restore`` ``(batch, length)``
    un-shuffles ``cat([kept, masked])`` back to the original order."""

    mask: torch.Tensor
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor

    def keep(self, x: torch.Tensor) -> torch.Tensor:
        """Visible tokens of ``x`` ``(batch, length, dim)`` -> ``(batch, n_keep, dim)``."""
        return torch.gather(x, 1, self.ids_keep[..., None].expand(-1, -1, x.shape[-1]))


def random_masking(
    batch: int,
    length: int,
    mask_ratio: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> RandomMasking:
    """MAE's per-sample random masking (He et al. 2022): keep ``int(length * (1 - mask_ratio))`` positions chosen
    uniformly at random per sample (argsort of uniform noise), mask the rest."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    n_keep = int(length * (1 - mask_ratio))
    noise = torch.rand(batch, length, device=device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    mask[:, :n_keep] = False
    mask = torch.gather(mask, 1, ids_restore)
    return RandomMasking(mask, ids_shuffle[:, :n_keep], ids_restore)


def masked_reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    norm_target: bool = False,
) -> torch.Tensor:
    """MAE loss: mean squared error per token ``(batch, length, dim)``, averaged over masked tokens only
    (``mask`` True = masked) that are also ``valid`` (padding mask, True = real token) when given.
    ``norm_target`` normalises each target token by its own mean and variance (MAE's ``norm_pix_loss``)."""
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ShapeError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match and mask must be "
            f"{tuple(pred.shape[:2])}, got {tuple(mask.shape)}",
            source="masked_reconstruction_loss",
        )
    if norm_target:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_token = ((pred - target) ** 2).mean(-1)  # (batch, length)
    weights = mask.to(per_token.dtype)
    if valid is not None:
        weights = weights * valid.to(per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp_min(1.0)
