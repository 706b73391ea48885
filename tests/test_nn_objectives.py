"""Objectives against hand-written transcriptions of their published formulas (tolerance 1e-6 on float64)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodal.errors import NonFiniteError, ShapeError
from xmodal.nn.objectives import (
    LogitScale,
    cross_entropy,
    info_nce,
    masked_reconstruction_loss,
    mil_nce,
    pairwise_info_nce,
    random_masking,
    vatt_loss,
)


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def _reference_info_nce(a: torch.Tensor, b: torch.Tensor, s: float) -> float:
    """CLIP's pseudo-code, written as sums: mean over i of -log softmax_j(s a_i.b_j)[i], both ways, halved."""
    n = a.shape[0]
    loss_a = loss_b = 0.0
    for i in range(n):
        loss_a += -math.log(
            math.exp(s * float(a[i] @ b[i])) / sum(math.exp(s * float(a[i] @ b[j])) for j in range(n))
        )
        loss_b += -math.log(
            math.exp(s * float(b[i] @ a[i])) / sum(math.exp(s * float(b[i] @ a[j])) for j in range(n))
        )
    return (loss_a / n + loss_b / n) / 2


def test_info_nce_equals_reference_formula() -> None:
    a, b = _unit(6, 8, seed=1), _unit(6, 8, seed=2)
    for s in (1.0, 1 / 0.07, 100.0):
        assert float(info_nce(a, b, s)) == pytest.approx(_reference_info_nce(a, b, s), rel=1e-9)


def test_logit_scale_init_and_clamp() -> None:
    scale = LogitScale()
    assert float(scale().detach()) == pytest.approx(1 / 0.07, rel=1e-6)
    assert float(scale.log_scale.detach()) == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)  # exp(10) > 100
    assert float(scale().detach()) == 100.0


def test_pairwise_info_nce_is_mean_over_pairs() -> None:
    e = {m: _unit(5, 4, seed=i) for i, m in enumerate(["image", "audio", "text"])}
    expected = (
        info_nce(e["image"], e["audio"], 10.0)
        + info_nce(e["image"], e["text"], 10.0)
        + info_nce(e["audio"], e["text"], 10.0)
    ) / 3
    torch.testing.assert_close(pairwise_info_nce(e, 10.0), expected)
    weighted = pairwise_info_nce(e, 10.0, weights={("image", "audio"): 2.0, ("text", "audio"): 0.5})
    torch.testing.assert_close(
        weighted, 2 * info_nce(e["image"], e["audio"], 10.0) + 0.5 * info_nce(e["audio"], e["text"], 10.0)
    )


def test_info_nce_errors_are_typed() -> None:
    with pytest.raises(ShapeError):
        info_nce(_unit(4, 3), _unit(5, 3), 1.0)
    bad = _unit(4, 3)
    bad[1, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        info_nce(bad, _unit(4, 3), 1.0)


def _reference_mil_nce(v: torch.Tensor, t: torch.Tensor, tau: float) -> float:
    """Miech et al. 2020 eq. 1 with the reference code's negatives: for clip i, the positives are its k captions;
    the denominator holds every (clip i, caption of j) and every (clip j, caption of i) pair."""
    n, k, _ = t.shape
    total = 0.0
    for i in range(n):
        pos = sum(math.exp(float(v[i] @ t[i, c]) / tau) for c in range(k))
        den = sum(
            math.exp(float(v[i] @ t[j, c]) / tau) + math.exp(float(v[j] @ t[i, c]) / tau)
            for j in range(n)
            for c in range(k)
        )
        total += -math.log(pos / den)
    return total / n


def test_mil_nce_equals_reference_formula() -> None:
    v, t = _unit(5, 6, seed=3), _unit(5, 3, 6, seed=4)
    for tau in (1.0, 0.07):
        assert float(mil_nce(v, t, tau)) == pytest.approx(_reference_mil_nce(v, t, tau), rel=1e-9)


def test_vatt_loss_is_nce_plus_weighted_mil_nce() -> None:
    va, aa, vt, tt = _unit(4, 6, seed=5), _unit(4, 6, seed=6), _unit(4, 5, seed=7), _unit(4, 2, 5, seed=8)
    out = vatt_loss(va, aa, vt, tt, temperature=0.07, text_weight=0.5)
    assert float(out.nce_va) == pytest.approx(_reference_info_nce(va, aa, 1 / 0.07), rel=1e-9)
    assert float(out.mil_nce_vt) == pytest.approx(_reference_mil_nce(vt, tt, 0.07), rel=1e-9)
    assert float(out.loss) == pytest.approx(float(out.nce_va) + 0.5 * float(out.mil_nce_vt), rel=1e-12)


def test_cross_entropy_per_segment_with_ignore() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 10, 29, generator=g)  # AVE: 10 one-second segments, 28 events + background
    target = torch.randint(0, 29, (2, 10), generator=g)
    target[0, 3] = -100
    keep = target.reshape(-1) != -100
    expected = F.cross_entropy(logits.reshape(-1, 29)[keep], target.reshape(-1)[keep])
    torch.testing.assert_close(cross_entropy(logits, target), expected)
    with pytest.raises(ShapeError):
        cross_entropy(logits, target[:, :5])


def test_random_masking_counts_and_restore() -> None:
    g = torch.Generator().manual_seed(0)
    m = random_masking(3, 20, 0.75, generator=g)
    assert m.mask.shape == (3, 20) and m.mask.sum(1).tolist() == [15, 15, 15]  # int(20 * 0.25) = 5 kept
    x = torch.arange(60.0).view(3, 20, 1)
    kept = m.keep(x)  # (3, 5, 1)
    for i in range(3):
        assert sorted(kept[i, :, 0].tolist()) == x[i, ~m.mask[i], 0].tolist()
    # ids_restore un-shuffles [kept, masked] back to the original order, as MAE's decoder does.
    shuffled = torch.gather(x, 1, m.ids_restore.argsort(1)[..., None])
    torch.testing.assert_close(torch.gather(shuffled, 1, m.ids_restore[..., None]), x)


def test_masked_reconstruction_uses_masked_valid_tokens_only() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    valid = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    loss = masked_reconstruction_loss(pred, target, mask, valid=valid)
    sel = mask & valid
    assert float(loss) == pytest.approx(float(((pred - target) ** 2)[sel].mean()), rel=1e-6)
    changed = pred.clone()
    changed[~sel] += 5.0  # visible or padded tokens do not count
    assert float(masked_reconstruction_loss(changed, target, mask, valid=valid)) == pytest.approx(float(loss))
    t = target
    normed = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    assert float(masked_reconstruction_loss(pred, target, mask, norm_target=True)) == pytest.approx(
        float(((pred - normed) ** 2)[mask].mean()), rel=1e-6
    )


def test_pairwise_gathers_each_modality_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three modalities, three pairs: three gathers per step (one per modality), not six; same value."""
    from xmodal.nn import objectives

    calls: list[int] = []
    real = objectives.gather_with_grad
    monkeypatch.setattr(objectives, "gather_with_grad", lambda x: calls.append(x.shape[0]) or real(x))
    torch.manual_seed(0)
    e = {m: _unit(6, 4, seed=s) for s, m in enumerate(("image", "audio", "text"))}
    loss = pairwise_info_nce(e, 10.0)
    assert len(calls) == 3
    expected = sum(info_nce(e[x], e[y], 10.0, gather=False) for x, y in (("image", "audio"), ("image", "text"),
                                                                        ("audio", "text"))) / 3
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)


def test_training_loss_has_no_finite_check_inside() -> None:
    """The trainer's path (contrastive_loss) leaves NaN to the step's loss check; the direct API still raises."""
    from xmodal.nn.multimodal import contrastive_loss

    bad = _unit(4, 3)
    bad[1, 0] = float("nan")
    outputs = {"a_emb": bad, "b_emb": _unit(4, 3), "logit_scale": torch.tensor(10.0)}
    assert torch.isnan(contrastive_loss(outputs))
    with pytest.raises(NonFiniteError):
        contrastive_loss(outputs, check_finite=True)


def test_pairwise_equals_the_per_pair_formulation_written_out() -> None:
    """Demo-sized step (batch 128, 256-d, three modalities): the loss and its gradients equal CLIP's per-pair
    formulation written out here, both logit matrices of every pair computed separately, to 1e-6."""
    from xmodal.nn.multimodal import contrastive_loss

    names = ("image", "audio", "text")
    raw = {m: torch.randn(128, 256, generator=torch.Generator().manual_seed(s)) for s, m in enumerate(names)}
    scale = torch.tensor(1 / 0.07)

    def per_pair(e: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for x, y in (("image", "audio"), ("image", "text"), ("audio", "text")):
            a, b = e[x], e[y]
            rows = -torch.log_softmax(scale * a @ b.T, dim=1).diagonal().mean()
            cols = -torch.log_softmax(scale * b @ a.T, dim=1).diagonal().mean()
            total = total + (rows + cols) / 2
        return total / 3

    leaves = [{m: v.clone().requires_grad_(True) for m, v in raw.items()} for _ in range(2)]
    ours = contrastive_loss({f"{m}_emb": F.normalize(v, dim=-1) for m, v in leaves[0].items()} | {"logit_scale": scale})
    reference = per_pair({m: F.normalize(v, dim=-1) for m, v in leaves[1].items()})
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    ours.backward()
    reference.backward()
    for m in names:
        torch.testing.assert_close(leaves[0][m].grad, leaves[1][m].grad, rtol=0, atol=1e-6)
