"""SNR, SI-SNR and SI-SDR, following torchmetrics 1.9 ``functional/audio/snr.py`` and ``sdr.py``.

Same argument order ``(preds, target)``, same epsilon (the machine epsilon of the input dtype) and the same
numbers: the arithmetic runs in torch on the input's dtype. Leading dimensions are batch dimensions; the
result has shape ``preds.shape[:-1]`` (a float for one numpy signal, a tensor for torch input). A silent
target is not an error here: torchmetrics defines the value through its epsilon, and so do we.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xmodal.metrics.audio._inputs import check_pair, is_torch, to_numpy


def _as_tensors(preds: Any, target: Any):
    import torch

    p, t = to_numpy(preds, "preds"), to_numpy(target, "target")
    check_pair(t, p, names=("target", "preds"))
    dtype = np.result_type(p.dtype, t.dtype)
    return torch.from_numpy(np.ascontiguousarray(p, dtype=dtype)), torch.from_numpy(
        np.ascontiguousarray(t, dtype=dtype)
    )


def _finish(value, preds: Any):
    if is_torch(preds):
        return value.to(preds.device)
    out = value.numpy()
    return float(out) if out.ndim == 0 else out


def snr(preds: Any, target: Any, zero_mean: bool = False):
    """SNR in dB, 10·log10((Σs²+eps)/(Σ(s−ŝ)²+eps)), as torchmetrics ``signal_noise_ratio``."""
    import torch

    p, t = _as_tensors(preds, target)
    eps = torch.finfo(p.dtype).eps
    if zero_mean:
        t = t - torch.mean(t, dim=-1, keepdim=True)
        p = p - torch.mean(p, dim=-1, keepdim=True)
    noise = t - p
    value = (torch.sum(t**2, dim=-1) + eps) / (torch.sum(noise**2, dim=-1) + eps)
    return _finish(10 * torch.log10(value), preds)


def si_sdr(preds: Any, target: Any, zero_mean: bool = False):
    """Scale-invariant SDR in dB (Le Roux et al. 2019), as torchmetrics
    ``scale_invariant_signal_distortion_ratio``."""
    import torch

    p, t = _as_tensors(preds, target)
    eps = torch.finfo(p.dtype).eps
    if zero_mean:
        t = t - torch.mean(t, dim=-1, keepdim=True)
        p = p - torch.mean(p, dim=-1, keepdim=True)
    # Project preds on the target: the optimal scale makes the metric blind to gain.
    alpha = (torch.sum(p * t, dim=-1, keepdim=True) + eps) / (torch.sum(t**2, dim=-1, keepdim=True) + eps)
    t_scaled = alpha * t
    noise = t_scaled - p
    value = (torch.sum(t_scaled**2, dim=-1) + eps) / (torch.sum(noise**2, dim=-1) + eps)
    return _finish(10 * torch.log10(value), preds)


def si_snr(preds: Any, target: Any):
    """Scale-invariant SNR in dB: SI-SDR on zero-mean signals, as torchmetrics
    ``scale_invariant_signal_noise_ratio``."""
    return si_sdr(preds, target, zero_mean=True)
