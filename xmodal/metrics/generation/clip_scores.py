"""CLIPScore and RefCLIPScore (Hessel et al. 2021, jmhessel/clipscore), CLIPSIM for video, and classifier
accuracy against conditioning labels.

CLIP-S(c, v) = 2.5 * max(cos(E_img(v), E_txt("A photo depicts " + c)), 0), averaged over images.
RefCLIP-S = harmonic mean of CLIP-S and max_r cos(E_txt(c), E_txt(r)); references get the same prefix (Hessel's
script tokenizes every text through one dataset class) and the text-text term is neither clipped nor scaled.
This is not torchmetrics' CLIPScore (100 * cos, no prefix, clamp of the mean, another model).

CLIPSIM (Wu et al., GODIVA; used by Make-A-Video and others): mean over a video's frames of the cosine between
the frame's and the caption's CLIP embeddings (no prefix, no clipping, no 2.5 factor), averaged over videos.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from xmodal.errors import MetricInputError
from xmodal.pretrained.clip import CLIP, SimpleTokenizer, l2_normalize, preprocess_image

PREFIX = "A photo depicts "


@torch.no_grad()
def encode_images(model: CLIP, images: Sequence[Image.Image], batch_size: int = 64) -> torch.Tensor:
    """``(n, 512)`` image embeddings (OpenAI preprocessing)."""
    out = []
    for i in range(0, len(images), batch_size):
        pixels = torch.stack([preprocess_image(im) for im in images[i : i + batch_size]])
        out.append(model.encode_image(pixels.to(model.visual.conv1.weight.device)).cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_texts(
    model: CLIP, tokenizer: SimpleTokenizer, texts: Sequence[str], prefix: str = PREFIX, batch_size: int = 256
) -> torch.Tensor:
    """``(n, 512)`` text embeddings of ``prefix + text``, truncated to 77 tokens as Hessel's script."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer.tokenize([prefix + t for t in texts[i : i + batch_size]], truncate=True)
        out.append(model.encode_text(tokens.to(model.token_embedding.weight.device)).cpu())
    return torch.cat(out)


def clip_score_from_embeddings(
    image_emb: torch.Tensor, text_emb: torch.Tensor, w: float = 2.5
) -> tuple[float, torch.Tensor]:
    """``(mean CLIP-S, per-image CLIP-S)`` from paired embeddings: ``w * max(cos, 0)``."""
    if image_emb.shape != text_emb.shape:
        raise MetricInputError(
            f"{image_emb.shape[0]} images but {text_emb.shape[0]} captions", source="captions"
        )
    per = w * (l2_normalize(image_emb) * l2_normalize(text_emb)).sum(dim=1).clamp_min(0)
    return float(per.mean()), per


def ref_clip_score_from_embeddings(
    image_emb: torch.Tensor, cand_emb: torch.Tensor, ref_embs: Sequence[torch.Tensor], w: float = 2.5
) -> tuple[float, torch.Tensor]:
    """``(mean RefCLIP-S, per-image RefCLIP-S)``; ``ref_embs[i]`` is ``(r_i, d)`` for candidate ``i``."""
    _, clip_s = clip_score_from_embeddings(image_emb, cand_emb, w)
    if len(ref_embs) != len(cand_emb) or any(len(r) == 0 for r in ref_embs):
        raise MetricInputError("every candidate needs at least one reference", source="references")
    cand = l2_normalize(cand_emb)
    ref_s = torch.stack([(l2_normalize(r) @ cand[i]).max() for i, r in enumerate(ref_embs)])
    per = 2 * clip_s * ref_s / (clip_s + ref_s)
    return float(per.mean()), per


def clip_score(
    model: CLIP,
    tokenizer: SimpleTokenizer,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
) -> dict[str, float]:
    """CLIP-S (and RefCLIP-S when ``references`` are given) of captions for images, Hessel et al.'s protocol."""
    if len(images) != len(captions) or not images:
        raise MetricInputError(
            f"{len(images)} images and {len(captions)} captions: expected equal, non-zero", source="captions"
        )
    img = encode_images(model, images)
    cand = encode_texts(model, tokenizer, captions)
    out = {"clip_score": clip_score_from_embeddings(img, cand)[0]}
    if references is not None:
        flat = [r for refs in references for r in refs]
        flat_emb = encode_texts(model, tokenizer, flat)
        splits, start = [], 0
        for refs in references:
            splits.append(flat_emb[start : start + len(refs)])
            start += len(refs)
        out["ref_clip_score"] = ref_clip_score_from_embeddings(img, cand, splits)[0]
    return out


def clipsim(
    model: CLIP, tokenizer: SimpleTokenizer, videos: Sequence[Sequence[Image.Image]], captions: Sequence[str]
) -> float:
    """CLIPSIM: mean over videos of the mean frame-caption cosine similarity (no prefix, no clipping)."""
    if len(videos) != len(captions) or not videos:
        raise MetricInputError(f"{len(videos)} videos and {len(captions)} captions", source="captions")
    text = l2_normalize(encode_texts(model, tokenizer, captions, prefix=""))
    sims = [
        float((l2_normalize(encode_images(model, list(frames))) @ text[i]).mean())
        for i, frames in enumerate(videos)
    ]
    return float(sum(sims) / len(sims))


def classifier_accuracy(logits: torch.Tensor, labels: torch.Tensor | Sequence[int]) -> float:
    """Top-1 accuracy (micro: correct / total) of a fixed classifier's ``(n, classes)`` logits on generated
    samples against their conditioning labels. Not CAS (train on generated, test on real)."""
    labels = torch.as_tensor(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise MetricInputError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)}: expected (n, c) and (n,)",
            source="labels",
        )
    if labels.numel() == 0:
        raise MetricInputError("no samples", source="labels")
    return float((logits.argmax(dim=1) == labels).double().mean())
