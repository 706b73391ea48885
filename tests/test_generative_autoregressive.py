"""Autoregressive prior: KV-cached sampling equals uncached sampling, top-k/top-p filtering against Hugging
Face's logits warpers, a conditional prior that learns a token mapping, and re-ranking by a contrastive score."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import ConfigError, ShapeError
from xmodal.generative.autoregressive import (
    TransformerPrior,
    contrastive_scores,
    filter_logits,
    rerank,
    sample_logits,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def test_top_k_and_top_p_hand_values():
    logits = torch.log(torch.tensor([[0.5, 0.05, 0.3, 0.15]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.75))
    assert kept.tolist() == [[True, False, True, False]]  # 0.5 + 0.3 reaches 0.75
    assert torch.isfinite(filter_logits(logits, top_k=3)).tolist() == [[True, False, True, True]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).sum() == 1  # the best token always stays
    assert sample_logits(logits, temperature=0).tolist() == [0]
    with pytest.raises(ConfigError):
        filter_logits(logits, top_p=0.0)


def test_filters_match_transformers_warpers():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    logits = torch.randn(6, 50)
    for p in (0.3, 0.7, 0.95):
        ref = transformers.TopPLogitsWarper(p)(None, logits.clone())
        assert torch.equal(torch.isfinite(filter_logits(logits, top_p=p)), torch.isfinite(ref))
    ref_k = transformers.TopKLogitsWarper(7)(None, logits.clone())
    assert torch.equal(torch.isfinite(filter_logits(logits, top_k=7)), torch.isfinite(ref_k))


@pytest.mark.parametrize("conditional", [True, False])
def test_kv_cached_sampling_equals_uncached(conditional):
    torch.manual_seed(0)
    prior = TransformerPrior(vocab_size=11, seq_len=9, cond_vocab_size=5 if conditional else 0,
                             cond_len=3 if conditional else 0, dim=32, depth=2, heads=4).double().eval()
    cond = torch.randint(0, 5, (4, 3)) if conditional else None
    kw = {"temperature": 0.9, "top_k": 8, "top_p": 0.95}
    a = prior.sample(4, cond, generator=torch.Generator().manual_seed(5), use_cache=True, **kw)
    b = prior.sample(4, cond, generator=torch.Generator().manual_seed(5), use_cache=False, **kw)
    assert a.shape == (4, 9) and torch.equal(a, b)
    # the teacher-forced logits of the drawn sequence equal those the cached path used at each step
    full = prior(a, cond)
    greedy = prior.sample(4, cond, temperature=0)
    assert torch.equal(prior(greedy, cond).argmax(-1), greedy)
    assert full.shape == (4, 9, 11)


def test_conditional_prior_learns_a_mapping_and_reranks():
    torch.manual_seed(0)
    vocab, seq = 7, 6
    cond = torch.arange(4).repeat(4)[:, None]  # (16, 1) condition tokens 0..3
    target = (cond + torch.arange(seq)[None]) % vocab  # each condition has one sequence
    prior = TransformerPrior(vocab, seq, cond_vocab_size=4, cond_len=1, dim=32, depth=1, heads=2)
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    for _ in range(60):
        loss = prior.loss(target, cond)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    prior.eval()
    test_cond = torch.arange(4)[:, None]
    out = prior.sample(4, test_cond, temperature=0)
    assert torch.equal(out, (test_cond + torch.arange(seq)[None]) % vocab)

    samples = torch.arange(12).reshape(4, 3)
    scores = torch.tensor([0.1, 0.9, -0.3, 0.5])
    best, sorted_scores = rerank(samples, scores, keep=2)
    assert best.tolist() == [[3, 4, 5], [9, 10, 11]] and sorted_scores.tolist() == pytest.approx([0.9, 0.5])
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    torch.testing.assert_close(contrastive_scores(torch.tensor([2.0, 0.0]), emb),
                               torch.tensor([1.0, 0.0, 2 ** -0.5]))
    with pytest.raises(ShapeError):
        prior.sample(2, torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ShapeError):
        rerank(samples, torch.zeros(3))


def test_rerank_with_an_xmodal_contrastive_model():
    """DALL-E's use of CLIP: embed the condition and each decoded sample, keep the most similar samples."""
    from torch import nn

    from xmodal.nn.multimodal import ContrastiveModel

    torch.manual_seed(0)
    model = ContrastiveModel({"text": nn.Linear(5, 8), "image": nn.Linear(6, 8)}, embed_dim=4,
                             projections={"text": 8, "image": 8}).eval()
    text, images = torch.randn(1, 5), torch.randn(7, 6)
    with torch.no_grad():
        out = model({"text": text, "image": images})
    scores = contrastive_scores(out["text_emb"][0], out["image_emb"])
    best, best_scores = rerank(images, scores, keep=3)
    expected = torch.nn.functional.cosine_similarity(out["image_emb"], out["text_emb"], dim=-1)
    top = torch.argsort(expected, descending=True)[:3]
    assert torch.equal(best, images[top])
    torch.testing.assert_close(best_scores, expected[top])
