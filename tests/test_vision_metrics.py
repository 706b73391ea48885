"""The generation-metric maths against torch-fidelity 0.4.0 and pytorch-fid 0.3.0, run on the same features.

Their own functions are executed (see vision_reference.py); tolerance 1e-6 relative unless stated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from vision_reference import pytorch_fid_frechet, torch_fidelity_metrics
from xmodal.errors import MetricInputError, NonFiniteError, ShapeError
from xmodal.metrics.vision import (feature_statistics, fid_from_features, frechet_distance,
                                   inception_score_from_logits, kid_from_features, trace_sqrt_product)

REL = 1e-6


@pytest.fixture(scope="module")
def tf_ref():
    return torch_fidelity_metrics()


@pytest.fixture(scope="module")
def digits_features() -> tuple[np.ndarray, np.ndarray]:
    """Real data: 8x8 handwritten digits (sklearn), 64-d pixel features; digits 0-4 versus 5-9. Several pixels
    are always 0, so the covariances are singular (the eigh fall-back route)."""
    d = load_digits()
    x = d.data.astype(np.float32)
    return x[d.target < 5], x[d.target >= 5]


@pytest.fixture(scope="module")
def dense_features() -> tuple[np.ndarray, np.ndarray]:
    """Full-rank correlated 256-d features (the Cholesky route)."""
    rng = np.random.default_rng(0)
    mix = np.eye(256) + 0.1 * rng.standard_normal((256, 256))
    a = rng.standard_normal((700, 256)).astype(np.float32)
    b = (rng.standard_normal((650, 256)) @ mix + 0.3).astype(np.float32)
    return a, b


@pytest.fixture(scope="module")
def few_features() -> tuple[np.ndarray, np.ndarray]:
    """Fewer samples than dimensions (40 and 50 in 128-d): the sample-space (SVD) route."""
    rng = np.random.default_rng(1)
    return (rng.standard_normal((40, 128)).astype(np.float32),
            (rng.standard_normal((50, 128)) * 1.5 + 0.2).astype(np.float32))


@pytest.mark.parametrize("which", ["digits_features", "dense_features", "few_features"])
def test_fid_equals_torch_fidelity_and_pytorch_fid(which, request, tf_ref):
    real, fake = request.getfixturevalue(which)
    ours = fid_from_features(real, fake)
    s1 = tf_ref["fid_features_to_statistics"](torch.from_numpy(real).double())
    s2 = tf_ref["fid_features_to_statistics"](torch.from_numpy(fake).double())
    theirs_tf = tf_ref["fid_statistics_to_metric"](s1, s2, False)[tf_ref["KEY_METRIC_FID"]]
    theirs_pf = pytorch_fid_frechet()(s1["mu"], s1["sigma"], s2["mu"], s2["sigma"])
    assert ours == pytest.approx(theirs_tf, rel=REL)
    assert ours == pytest.approx(theirs_pf, rel=REL)
    assert ours > 1.0  # two different distributions


def test_frechet_of_identical_statistics_is_zero(digits_features):
    mu, sigma = feature_statistics(digits_features[0])
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)
    assert abs(fid_from_features(digits_features[0], digits_features[0])) < 1e-9 * np.trace(sigma)


def test_trace_sqrt_product_equals_scipy_sqrtm(dense_features):
    from scipy import linalg

    _, s1 = feature_statistics(dense_features[0])
    _, s2 = feature_statistics(dense_features[1])
    assert trace_sqrt_product(s1, s2) == pytest.approx(np.trace(linalg.sqrtm(s1 @ s2)).real, rel=1e-10)


def test_feature_statistics_unbiased_and_biased(digits_features):
    x = digits_features[0].astype(np.float64)
    assert np.allclose(feature_statistics(x)[1], np.cov(x, rowvar=False), rtol=1e-12, atol=0)
    assert np.allclose(feature_statistics(x, unbiased=False)[1], np.cov(x, rowvar=False, bias=True),
                       rtol=1e-12, atol=0)


@pytest.mark.parametrize("n", [1000, 1003])  # 1003: unequal splits, i*n//10 boundaries
def test_inception_score_equals_torch_fidelity(n, tf_ref):
    # Logits with a class structure, 1008 wide as the FID Inception's.
    g = torch.Generator().manual_seed(n)
    logits = 4 * torch.randn(n, 1008, generator=g) + 8 * torch.nn.functional.one_hot(
        torch.randint(0, 50, (n,), generator=g), 1008)
    ours = inception_score_from_logits(logits)
    theirs = tf_ref["isc_features_to_metric"](logits, splits=10, shuffle=True, rng_seed=2020)
    assert ours[0] == pytest.approx(theirs[tf_ref["KEY_METRIC_ISC_MEAN"]], rel=REL)
    assert ours[1] == pytest.approx(theirs[tf_ref["KEY_METRIC_ISC_STD"]], rel=REL)
    no_shuffle = tf_ref["isc_features_to_metric"](logits, splits=5, shuffle=False)
    assert inception_score_from_logits(logits.numpy(), splits=5, shuffle_seed=None)[0] == pytest.approx(
        no_shuffle[tf_ref["KEY_METRIC_ISC_MEAN"]], rel=REL)


def test_inception_score_bounds():
    # Uniform predictions give 1; one-hot-like predictions over k equally used classes give k.
    assert inception_score_from_logits(torch.zeros(100, 1008))[0] == pytest.approx(1.0, abs=1e-12)
    sharp = 100 * torch.nn.functional.one_hot(torch.arange(200) % 20, 1008).double()
    assert inception_score_from_logits(sharp, splits=10, shuffle_seed=None)[0] == pytest.approx(20.0, rel=1e-6)


@pytest.mark.parametrize("which", ["digits_features", "dense_features"])
def test_kid_equals_torch_fidelity(which, request, tf_ref):
    real, fake = request.getfixturevalue(which)
    kw = dict(kid_subsets=20, kid_subset_size=300, verbose=False)
    theirs = tf_ref["kid_features_to_metric"](torch.from_numpy(real), torch.from_numpy(fake), **kw)
    ours = kid_from_features(torch.from_numpy(real), fake, subsets=20, subset_size=300)
    assert ours[0] == pytest.approx(theirs[tf_ref["KEY_METRIC_KID_MEAN"]], rel=REL)
    assert ours[1] == pytest.approx(theirs[tf_ref["KEY_METRIC_KID_STD"]], rel=REL)
    assert ours[0] > 0


def test_metric_input_errors():
    with pytest.raises(ShapeError):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(MetricInputError):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(NonFiniteError):
        fid_from_features(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(MetricInputError):
        kid_from_features(np.zeros((10, 3)), np.zeros((10, 3)), subset_size=11)
    with pytest.raises(MetricInputError):
        inception_score_from_logits(np.zeros((5, 10)), splits=10)
