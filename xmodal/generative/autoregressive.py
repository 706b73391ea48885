"""An autoregressive transformer prior over discrete tokens with conditioning tokens (DALL-E's stage 2:
``[text tokens] + [image tokens]`` in one causal stream), KV-cached sampling with temperature, top-k and
top-p, and re-ranking of samples by a contrastive model's score (as DALL-E re-ranks with CLIP).

Conditioning tokens and target tokens have their own vocabularies and embeddings; the model predicts the next
target token from every position from the last conditioning token on. The loss weights the two streams as
DALL-E does (``cond_loss_weight`` for predicting the condition itself, 0 by default; DALL-E uses 1/8 text,
7/8 image). Attention is written out here (not ``nn.TransformerEncoder``) because sampling needs a key/value
cache; the cached and uncached paths compute the same logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, ShapeError

Cache = list[tuple[torch.Tensor, torch.Tensor]]


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim={dim} must be divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``x`` ``(batch, new, dim)``; ``cache`` the keys/values of earlier positions. Returns the output and
        the updated ``(keys, values)``, each ``(batch, heads, positions, head_dim)``."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        past = k.shape[2] - n
        # position i of the new block sees every cached position and the new ones up to itself
        mask = torch.ones(n, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=past)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d)), (k, v)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x, cache=None):
        h, new_cache = self.attn(self.ln1(x), cache)
        x = x + h
        return x + self.mlp(self.ln2(x)), new_cache


class TransformerPrior(nn.Module):
    """GPT-style prior ``p(target | cond) = prod_i p(target_i | cond, target_<i)``.

    Args:
        vocab_size: target vocabulary (e.g. a VQ-VAE's codebook size).
        seq_len: number of target tokens per sample.
        cond_vocab_size / cond_len: conditioning vocabulary and length (0 for an unconditional prior, which
            then starts from a learnt start token).
    """

    def __init__(self, vocab_size: int, seq_len: int, cond_vocab_size: int = 0, cond_len: int = 0,
                 dim: int = 256, depth: int = 4, heads: int = 4, dropout: float = 0.0,
                 cond_loss_weight: float = 0.0) -> None:
        super().__init__()
        if (cond_vocab_size == 0) != (cond_len == 0):
            raise ConfigError("cond_vocab_size and cond_len must both be 0 or both positive")
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.cond_vocab_size, self.cond_len = cond_vocab_size, cond_len
        self.prefix_len = max(cond_len, 1)  # an unconditional prior reads one start token
        self.tok = nn.Embedding(vocab_size, dim)
        self.cond_tok = nn.Embedding(max(cond_vocab_size, 1), dim)
        self.pos = nn.Parameter(torch.zeros(self.prefix_len + seq_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        self.cond_head = nn.Linear(dim, max(cond_vocab_size, 1)) if cond_loss_weight else None
        self.cond_loss_weight = cond_loss_weight

    def _prefix(self, cond: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if self.cond_len == 0:
            if cond is not None:
                raise ConfigError("this prior is unconditional but conditioning tokens were given")
            return torch.zeros(batch, 1, dtype=torch.int64, device=device)
        if cond is None or cond.ndim != 2 or cond.shape[1] != self.cond_len:
            got = None if cond is None else tuple(cond.shape)
            raise ShapeError(f"cond must be (batch, {self.cond_len}) tokens, got {got}", source="cond")
        if int(cond.min()) < 0 or int(cond.max()) >= self.cond_vocab_size:
            raise ShapeError(f"cond tokens must lie in 0..{self.cond_vocab_size - 1}", source="cond")
        return cond

    def _embed(self, prefix: torch.Tensor | None, tokens: torch.Tensor | None, start: int) -> torch.Tensor:
        parts = []
        if prefix is not None:
            parts.append(self.cond_tok(prefix))
        if tokens is not None and tokens.shape[1] > 0:
            parts.append(self.tok(tokens))
        h = torch.cat(parts, 1)
        return h + self.pos[start : start + h.shape[1]]

    def _run(self, h: torch.Tensor, cache: Cache | None):
        new_cache = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.ln(h), new_cache

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(batch, seq_len, vocab)`` of each target token given everything before it."""
        if tokens.ndim != 2 or tokens.shape[1] > self.seq_len:
            raise ShapeError(f"tokens must be (batch, <= {self.seq_len}), got {tuple(tokens.shape)}",
                             source="tokens")
        prefix = self._prefix(cond, tokens.shape[0], tokens.device)
        h, _ = self._run(self._embed(prefix, tokens[:, :-1], 0), None)
        self._last_hidden = h
        return self.head(h[:, self.prefix_len - 1 :])

    def loss(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy of the target tokens (and, with ``cond_loss_weight``, of the condition's own tokens)."""
        logits = self.forward(tokens, cond)
        target = F.cross_entropy(logits.reshape(-1, self.vocab_size), tokens.reshape(-1))
        out = {"loss": target, "target_ce": target}
        if self.cond_head is not None and self.cond_len > 1 and cond is not None:  # forward() checked cond
            cond_logits = self.cond_head(self._last_hidden[:, : self.cond_len - 1])
            cond_ce = F.cross_entropy(cond_logits.reshape(-1, self.cond_vocab_size), cond[:, 1:].reshape(-1))
            w = self.cond_loss_weight
            out.update(cond_ce=cond_ce, loss=w * cond_ce + (1 - w) * target)
        return out

    @torch.no_grad()
    def sample(self, num_samples: int, cond: torch.Tensor | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
               use_cache: bool = True) -> torch.Tensor:
        """Draw ``(num_samples, seq_len)`` tokens; ``cond`` ``(num_samples, cond_len)`` (repeat a condition to
        draw several samples for it). ``use_cache=False`` recomputes the whole prefix each step."""
        device = self.pos.device
        prefix = self._prefix(cond, num_samples, device)
        tokens = torch.zeros(num_samples, 0, dtype=torch.int64, device=device)
        cache: Cache | None = None
        for i in range(self.seq_len):
            if use_cache:
                h_in = self._embed(prefix, None, 0) if cache is None else self._embed(None, tokens[:, -1:],
                                                                                        self.prefix_len + i - 1)
                h, cache = self._run(h_in, cache)
            else:
                h, _ = self._run(self._embed(prefix, tokens, 0), None)
            logits = self.head(h[:, -1])
            nxt = sample_logits(logits, temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
        return tokens


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits with everything outside the top ``k`` and outside the nucleus ``p`` set to ``-inf``.

    The nucleus is the smallest set of most likely tokens whose probability reaches ``top_p`` (the token that
    crosses it is kept, and so is the most likely token always), as Holtzman et al. and Hugging Face define it.
    """
    out = logits.clone()
    if top_k is not None:
        if top_k < 1:
            raise ConfigError(f"top_k={top_k} must be >= 1")
        kth = torch.topk(out, min(top_k, out.shape[-1]), dim=-1).values[..., -1:]
        out[out < kth] = float("-inf")
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ConfigError(f"top_p={top_p} must lie in (0, 1]")
        sorted_logits, order = torch.sort(out, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        remove = cum - torch.softmax(sorted_logits, -1) >= top_p  # mass before this token already reaches p
        remove[..., 0] = False
        out = out.scatter(-1, order, sorted_logits.masked_fill(remove, float("-inf")))
    return out


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits`` ``(batch, vocab)``; ``temperature = 0`` is greedy."""
    if temperature == 0:
        return logits.argmax(-1)
    if temperature < 0:
        raise ConfigError(f"temperature={temperature} must be >= 0")
    probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def rerank(samples: torch.Tensor, scores: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
           keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples sorted by a score, best first, and the sorted scores; ``scores`` is a ``(n,)`` tensor or a
    callable ``samples -> (n,)`` (e.g. :func:`contrastive_scores` after decoding the tokens)."""
    s = scores(samples) if callable(scores) else scores
    if s.shape != (samples.shape[0],):
        raise ShapeError(f"scores must be ({samples.shape[0]},), got {tuple(s.shape)}", source="scores")
    order = torch.argsort(s, descending=True)[:keep]
    return samples[order], s[order]


def contrastive_scores(cond_embedding: torch.Tensor, sample_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each sample's embedding ``(n, d)`` to the condition's ``(d,)`` or ``(n, d)``:
    CLIP's re-ranking score (embeddings from ``xmodal.nn.multimodal.ContrastiveModel`` or ``pretrained.clip``)."""
    cond = F.normalize(cond_embedding.reshape(-1, cond_embedding.shape[-1]), dim=-1)
    return (F.normalize(sample_embeddings, dim=-1) * cond).sum(-1)
