"""The caption towers of the retrieval task (``model.text``) and the inputs each one reads.

- ``minilm``: the frozen MiniLM sentence embedding ``(384,)`` (mean-pooled, computed once) and a trainable MLP
  (:class:`xmodal.models.adapters.TextProjection`).
- ``transformer``: the frozen MiniLM's token states ``(data.max_tokens, 384)`` with their mask, and a trainable
  pre-norm Transformer (``model.text_layers`` layers, learned positions, a CLS token that pools by attention).
  The word order reaches the trainable part: "a dog to the left of a cat" and its mirror give other inputs, and
  attention can weigh the words that tell a hard-negative twin apart.
- ``hybrid``: both paths summed, the ``transformer`` tower over the token states and a linear map of the caption's
  TF-IDF row (a lexical path beside the order-aware one, as sparse-plus-dense retrievers do). The TF-IDF row rides
  in the token-state tensor, as rows after the ``data.max_tokens`` token rows (:func:`pack_tfidf`), so that every
  caption input stays one tensor with one mask.
- ``bag_of_words``: TF-IDF rows over the training captions' words and one trainable linear map. It sees which
  words a caption holds and nothing of their order: the trivial text tower of the ``bag_of_words`` baseline.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError

TEXT_TOWERS = ("minilm", "transformer", "bag_of_words", "hybrid")
MINILM_DIM = 384
_WORDS = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


def tfidf(train_texts: list[str], texts: list[str]) -> torch.Tensor:
    """``(len(texts), vocabulary)`` TF-IDF rows over the words of ``train_texts`` (lower-cased runs of two or more
    word characters), smoothed ``idf = ln((1 + n) / (1 + df)) + 1`` and L2-normalised: scikit-learn's
    ``TfidfVectorizer()`` defaults, written here so that the core package needs no scikit-learn."""
    docs = [_WORDS.findall(t.lower()) for t in train_texts]
    vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
    df = torch.zeros(len(vocab), dtype=torch.float64)
    for d in docs:
        for w in set(d):
            df[vocab[w]] += 1
    idf = torch.log((1 + len(docs)) / (1 + df)) + 1
    x = torch.zeros(len(texts), len(vocab), dtype=torch.float64)
    for r, t in enumerate(texts):
        for w in _WORDS.findall(t.lower()):
            if w in vocab:
                x[r, vocab[w]] += 1
    return F.normalize(x * idf, dim=1)


def token_states(texts: list[str], max_tokens: int, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM's last hidden states ``(N, max_tokens, 384)`` float16 and the mask ``(N, max_tokens)`` of
    ``texts``, kept in the transform cache."""
    from xmodal.tasks import fields
    from xmodal.transforms.cache import make_key

    key = make_key(hashlib.sha256("\0".join(texts).encode()).hexdigest(), "minilm_tokens",
                   {"max_length": max_tokens})

    def compute() -> dict[str, torch.Tensor]:
        # Captions sorted by length and run in chunks padded to the chunk's longest, not to max_tokens: the same
        # states (padding is masked out of attention) for a fraction of MiniLM's work on short captions.
        lengths = [min(len(fields.token_ids(t, max_length=max_tokens)), max_tokens) for t in texts]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        feats = torch.zeros(len(texts), max_tokens, MINILM_DIM, dtype=torch.float16)
        mask = torch.zeros(len(texts), max_tokens, dtype=torch.bool)
        for start in range(0, len(order), 256):
            rows = order[start:start + 256]
            longest = max(lengths[r] for r in rows)
            f, m = fields.token_features([texts[r] for r in rows], max_length=longest)
            feats[rows, :longest], mask[rows, :longest] = f.half(), m
        return {"tokens": feats, "mask": mask}

    out = cache.get_or_compute(key, compute)
    return out["tokens"], out["mask"]


def text_inputs(kind: str, texts: list[str], train_texts: list[str], cache: Any,
                max_tokens: int = 32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What the ``kind`` tower reads for each of ``texts``: ``(N, 384)`` sentence embeddings, ``(N, vocabulary)``
    TF-IDF rows over ``train_texts``' words, or ``(N, max_tokens, 384)`` token states with their mask."""
    from xmodal.tasks.retrieval_data import caption_embeddings

    if kind == "minilm":
        return caption_embeddings(texts, cache), None
    if kind == "bag_of_words":
        return tfidf(train_texts, texts).float(), None
    if kind == "transformer":
        return token_states(texts, max_tokens, cache)
    if kind == "hybrid":
        tokens, mask = token_states(texts, max_tokens, cache)
        return pack_tfidf(tokens, tfidf(train_texts, texts)), mask
    raise ConfigError(f"model.text: unknown {kind!r}; choose one of {', '.join(TEXT_TOWERS)}")


def pack_tfidf(tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``(N, L, 384)`` token states and ``(N, V)`` TF-IDF rows -> ``(N, L + ceil(V / 384), 384)``: the TF-IDF row
    zero-padded and laid out as extra rows after the tokens (in the tokens' dtype)."""
    extra = -(-rows.shape[1] // MINILM_DIM)
    flat = torch.zeros(rows.shape[0], extra * MINILM_DIM, dtype=tokens.dtype)
    flat[:, : rows.shape[1]] = rows.to(tokens.dtype)
    return torch.cat([tokens, flat.view(rows.shape[0], extra, MINILM_DIM)], dim=1)


class BagOfWordsTower(nn.Module):
    """``(n, vocabulary)`` TF-IDF rows -> ``(n, hidden)`` by one linear map."""

    def __init__(self, vocabulary: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(vocabulary, hidden)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x)


class TokenAttentionTower(nn.Module):
    """``(n, L, 384)`` frozen MiniLM token states and mask ``(n, L)`` (True = a token) -> ``(n, hidden)``: a
    trainable Transformer over the tokens with learned positions; its CLS token pools the caption."""

    def __init__(self, hidden: int, layers: int, heads: int, max_tokens: int, dropout: float) -> None:
        super().__init__()
        from xmodal.nn.encoders.transformer import TransformerEncoder

        self.norm = nn.LayerNorm(MINILM_DIM)
        self.encoder = TransformerEncoder(dim=hidden, depth=layers, heads=heads, mlp_ratio=2.0, in_dim=MINILM_DIM,
                                          max_len=max_tokens, positions="learned", cls_token=True, pool="cls",
                                          dropout=dropout)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _, pooled = self.encoder.forward_all(self.norm(x), mask)
        return pooled


class HybridTower(nn.Module):
    """``(n, L + R, 384)`` (token states, then the TF-IDF row packed by :func:`pack_tfidf`) and mask ``(n, L)`` ->
    ``(n, hidden)``: :class:`TokenAttentionTower` of the tokens plus a linear map of the TF-IDF row."""

    def __init__(self, vocabulary: int, hidden: int, layers: int, heads: int, max_tokens: int,
                 dropout: float) -> None:
        super().__init__()
        self.tokens = TokenAttentionTower(hidden, layers, heads, max_tokens, dropout)
        self.words = nn.Linear(vocabulary, hidden)
        self.max_tokens, self.vocabulary = max_tokens, vocabulary
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length = x.shape[0], self.max_tokens
        words = x[:, length:].reshape(n, -1)[:, : self.vocabulary]
        return self.tokens(x[:, :length], mask) + self.words(words)


def build_text_tower(kind: str, *, in_dim: int, hidden: int, dropout: float, layers: int = 1, heads: int = 4,
                     max_tokens: int = 32, vocabulary: int = 0) -> nn.Module:
    """The trainable caption tower ``kind`` on inputs of width ``in_dim`` (384, or the vocabulary's size)."""
    if kind == "minilm":
        from xmodal.models.adapters import TextProjection

        return TextProjection(in_dim, hidden, dropout)
    if kind == "bag_of_words":
        return BagOfWordsTower(in_dim, hidden)
    if kind == "transformer":
        return TokenAttentionTower(hidden, layers, heads, max_tokens, dropout)
    if kind == "hybrid":
        return HybridTower(vocabulary, hidden, layers, heads, max_tokens, dropout)
    raise ConfigError(f"model.text: unknown {kind!r}; choose one of {', '.join(TEXT_TOWERS)}")
