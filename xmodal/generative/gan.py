"""Generative adversarial networks: the losses of the survey's Eq. 4 and its variants, penalties, conditional
and waveform discriminators, and an exponential moving average of a model.

Losses take the discriminator's raw outputs (logits, any shape) and return a scalar mean:

=================  ==============================================  ==========================================
kind               discriminator                                   generator
=================  ==============================================  ==========================================
``minimax``        ``-log D(x) - log(1 - D(G(z)))`` (Eq. 4)        ``log(1 - D(G(z)))`` (saturating)
``non_saturating`` same as minimax                                 ``-log D(G(z))`` (Goodfellow's fix)
``hinge``          ``relu(1 - D(x)) + relu(1 + D(G(z)))``          ``-D(G(z))``
``least_squares``  ``(D(x) - 1)^2 + D(G(z))^2`` (HiFi-GAN's)       ``(D(G(z)) - 1)^2``
``wasserstein``    ``D(G(z)) - D(x)`` (add :func:`gradient_penalty`) ``-D(G(z))``
=================  ==============================================  ==========================================

with ``D = sigmoid(logit)`` for the first two (computed with ``softplus`` for stability). The waveform
discriminators follow HiFi-GAN (Kong et al., ``jik876/hifi-gan`` ``models.py``): the multi-period one folds the
waveform into ``period`` columns, the multi-scale one (MelGAN's) runs on 1x, 2x and 4x average-pooled audio;
both return per-discriminator logits and feature maps for :func:`feature_matching_loss`.
"""

from __future__ import annotations

import copy
import functools
import operator
from collections.abc import Iterable, Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from xmodal.errors import ConfigError, ShapeError

GanLoss = Literal["minimax", "non_saturating", "hinge", "least_squares", "wasserstein"]


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: GanLoss = "non_saturating") -> torch.Tensor:
    """The discriminator's loss on real and generated logits (see the module table)."""
    if kind in ("minimax", "non_saturating"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "least_squares":
        return ((real - 1.0) ** 2).mean() + (fake**2).mean()
    if kind == "wasserstein":
        return fake.mean() - real.mean()
    raise ConfigError(f"unknown GAN loss {kind!r}; expected one of {list(get_args(GanLoss))}")


def generator_loss(fake: torch.Tensor, kind: GanLoss = "non_saturating") -> torch.Tensor:
    """The generator's loss on the discriminator's logits for generated data (see the module table)."""
    if kind == "minimax":
        return -F.softplus(fake).mean()  # log(1 - sigmoid(f)) = -softplus(f)
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wasserstein"):
        return -fake.mean()
    if kind == "least_squares":
        return ((fake - 1.0) ** 2).mean()
    raise ConfigError(f"unknown GAN loss {kind!r}; expected one of {list(get_args(GanLoss))}")


def multi_discriminator_losses(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor],
                               kind: GanLoss = "least_squares") -> torch.Tensor:
    """Sum over the sub-discriminators of :func:`discriminator_loss` (HiFi-GAN sums them)."""
    return _total(discriminator_loss(r, f, kind) for r, f in zip(real, fake, strict=True))


def multi_generator_losses(fake: Sequence[torch.Tensor], kind: GanLoss = "least_squares") -> torch.Tensor:
    return _total(generator_loss(f, kind) for f in fake)


def feature_matching_loss(real_maps: Sequence[Sequence[torch.Tensor]],
                          fake_maps: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """HiFi-GAN's ``feature_loss``: twice the sum over discriminators and layers of ``mean |real - fake|``; the
    real maps are detached (they are targets)."""
    return 2.0 * _total((r.detach() - g).abs().mean()
                        for real_d, fake_d in zip(real_maps, fake_maps, strict=True)
                        for r, g in zip(real_d, fake_d, strict=True))


def _total(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of the terms, left to right, as a tensor (``sum()`` would start from the int 0)."""
    listed = list(terms)
    if not listed:
        raise ShapeError("there are no discriminator outputs to sum", source="discriminators")
    return functools.reduce(operator.add, listed)


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0,
                     generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al.): ``weight * E[(||grad D(x_hat)||_2 - 1)^2]`` at random interpolates
    ``x_hat = a real + (1 - a) fake``, ``a ~ U(0, 1)`` per example; ``kwargs`` go to the discriminator."""
    if real.shape != fake.shape:
        raise ShapeError(f"real {tuple(real.shape)} != fake {tuple(fake.shape)}", source="fake")
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), generator=generator, device=real.device,
                       dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = discriminator(x_hat, **kwargs)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, gamma: float = 10.0) -> torch.Tensor:
    """R1 (Mescheder et al.): ``gamma / 2 * E ||grad_x D(x)||^2`` on real data. ``real`` must have had
    ``requires_grad_(True)`` before ``real_logits = D(real)``."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return 0.5 * gamma * grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


class ProjectionDiscriminator(nn.Module):
    """Miyato & Koyama's projection discriminator: ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``.

    ``features`` is any encoder ``x -> (batch, d)`` (an xmodal encoder; its ``out_dim`` gives d); the
    activation before the heads is ReLU, as in the paper's ResNet discriminators.
    """

    def __init__(self, features: nn.Module, num_classes: int, feature_dim: int | None = None,
                 spectral: bool = True) -> None:
        super().__init__()
        d = feature_dim if feature_dim is not None else getattr(features, "out_dim", None)
        if d is None:
            raise ConfigError("the feature extractor has no out_dim: pass feature_dim")
        wrap = spectral_norm if spectral else (lambda m: m)
        self.features = features
        self.linear = wrap(nn.Linear(d, 1))
        self.embed = wrap(nn.Embedding(num_classes, d))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` logits for images/sounds ``x`` of classes ``y`` (int ``(batch,)``)."""
        if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise ShapeError(f"labels must lie in 0..{self.num_classes - 1}", source="y")
        h = F.relu(self.features(x))
        return self.linear(h).squeeze(-1) + (self.embed(y) * h).sum(-1)


def _pad(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's ``DiscriminatorP``: the waveform ``(batch, 1, T)`` reflect-padded to a multiple of
    ``period``, folded to ``(batch, 1, T / period, period)`` and read by (k, 1) convolutions. ``width`` scales
    the channel counts (1.0 = the paper's 32 .. 1024)."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.period = period
        chans = [1] + [max(1, int(c * width)) for c in (32, 128, 512, 1024, 1024)]
        strides = [stride, stride, stride, stride, 1]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (kernel_size, 1), (strides[i], 1),
                                  padding=(_pad(5, 1), 0)))
            for i in range(5)
        )
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
            t = x.shape[-1]
        return _conv_stack(self.convs, self.conv_post, x.reshape(b, c, t // self.period, self.period))


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN's ``DiscriminatorS`` (MelGAN's grouped 1-D convolutions) on ``(batch, 1, T)``."""

    def __init__(self, spectral: bool = False, width: float = 1.0) -> None:
        super().__init__()
        wrap = spectral_norm if spectral else weight_norm

        def ch(c: int) -> int:
            return max(16, int(c * width))

        spec = [  # (in, out, kernel, stride, groups, padding)
            (1, ch(128), 15, 1, 1, 7), (ch(128), ch(128), 41, 2, 4, 20), (ch(128), ch(256), 41, 2, 16, 20),
            (ch(256), ch(512), 41, 4, 16, 20), (ch(512), ch(1024), 41, 4, 16, 20),
            (ch(1024), ch(1024), 41, 1, 16, 20), (ch(1024), ch(1024), 5, 1, 1, 2),
        ]
        self.convs = nn.ModuleList(wrap(nn.Conv1d(i, o, k, s, groups=g, padding=p)) for i, o, k, s, g, p in spec)
        self.conv_post = wrap(nn.Conv1d(ch(1024), 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _conv_stack(self.convs, self.conv_post, x)


def _conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """HiFi-GAN's sub-discriminator body: leaky-ReLU convolutions, then the output convolution; the flattened
    logits and every layer's feature map."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        fmap.append(x)
    x = post(x)
    fmap.append(x)
    return x.flatten(1), fmap


class MultiPeriodDiscriminator(nn.Module):
    """Period discriminators (HiFi-GAN: periods 2, 3, 5, 7, 11). ``forward(waveform)`` -> (logits, fmaps)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width=width) for p in periods)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        x = _as_waveform(x)
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class MultiScaleDiscriminator(nn.Module):
    """Scale discriminators on the raw, 2x and 4x average-pooled waveform (the first with spectral norm)."""

    def __init__(self, num_scales: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(spectral=(i == 0), width=width) for i in range(num_scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        x = _as_waveform(x)
        logits, fmaps = [], []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = self.pool(x)
            out, fmap = d(x)
            logits.append(out)
            fmaps.append(fmap)
        return logits, fmaps


def _as_waveform(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3 or x.shape[1] != 1:
        raise ShapeError(f"a waveform must be (batch, time) or (batch, 1, time), got {tuple(x.shape)}",
                         source="waveform")
    return x


class EMA(nn.Module):
    """An exponential moving average of a model's weights: ``ema = decay * ema + (1 - decay) * weight`` per
    :meth:`update`; buffers (e.g. batch-norm statistics) are copied. With ``use_num_updates`` the decay is
    ``min(decay, (1 + n) / (10 + n))`` at the n-th update, as latent-diffusion's ``LitEma`` warms up.

    ``ema.module`` is a frozen copy to sample with. ``state_dict`` holds the averaged weights and the update
    count, so a checkpoint resumes the average exactly.
    """

    num_updates: torch.Tensor

    def __init__(self, model: nn.Module, decay: float = 0.9999, use_num_updates: bool = False) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(f"decay={decay} must lie in [0, 1]")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.use_num_updates = use_num_updates
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.int64))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        n = int(self.num_updates)  # LitEma counts this update before it sets the decay
        decay = min(self.decay, (1 + n) / (10 + n)) if self.use_num_updates else self.decay
        ema_params = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            if name not in ema_params:
                raise ShapeError(f"parameter {name!r} is not in the averaged model", source=name)
            ema_params[name].lerp_(p.detach(), 1.0 - decay)
        ema_buffers = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            ema_buffers[name].copy_(b)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model``."""
        model.load_state_dict(self.module.state_dict())

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
