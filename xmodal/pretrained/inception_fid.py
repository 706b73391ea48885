"""The FID Inception-v3: the PyTorch port of TensorFlow's 2015-12-05 Inception graph used by pytorch-fid,
torch-fidelity and torchmetrics for FID, KID and the Inception Score.

Module and parameter names follow the official ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid) /
``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity), so that file loads with ``strict=True``; the
key set is committed in ``tests/fixtures/inception_fid_keys.json``. It differs from torchvision's ImageNet
Inception-v3: 1008 classes, TF-style average pooling that ignores padding, and max pooling in the last block.

Preprocessing follows torch-fidelity exactly: uint8 images, TF1 ``resize_bilinear`` (align_corners=False, no
half-pixel centres, no antialias) to 299x299 in float32, then ``(x - 128) / 128``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.pretrained.weights import WeightFile, load_weights

WEIGHTS = WeightFile(
    filename="pt_inception-2015-12-05-6726825d.pth",
    # torch.hub convention: the name carries the sha256 prefix (torch-fidelity's copy is reported as
    # 6726825d0af5f729...; a copy whose digest differs can be loaded with check=False / --no-checksum).
    sha256="6726825d",
    source="the pytorch-fid GitHub release 'fid_weights' (mseitzer/pytorch-fid, file "
           "pt_inception-2015-12-05-6726825d.pth; torch-fidelity's weights-inception-2015-12-05-6726825d.pth holds "
           "the same tensors)",
    aliases=("weights-inception-2015-12-05-6726825d.pth",),
)
INPUT_SIZE = 299


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x ``tf.image.resize_bilinear(align_corners=False)`` on ``(n, c, h, w)`` floats.

    Source coordinate of output pixel ``i`` is ``i * in/out`` (no half-pixel offset), neighbours are
    ``floor`` and ``min(floor+1, in-1)``; the weights are computed in float32 as in TF1 (and torch-fidelity's
    "slow", CPU bit-exact, method). Unlike ``F.interpolate`` this is not antialiased and not centred.
    """
    if x.ndim != 4 or not torch.is_floating_point(x):
        raise ShapeError(f"expected a float (n, c, h, w) tensor, got {x.dtype} {tuple(x.shape)}", source="image")
    out_h, out_w = size
    in_h, in_w = x.shape[2], x.shape[3]

    def axis(n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(n_out, dtype=x.dtype, device=x.device) * torch.tensor(n_in / n_out, dtype=torch.float32)
        lo = pos.long()
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, pos - lo.float()

    y_lo, y_hi, dy = axis(out_h, in_h)
    x_lo, x_hi, dx = axis(out_w, in_w)
    top, bottom = x[:, :, y_lo, :], x[:, :, y_hi, :]
    tl, tr, bl, br = top[..., x_lo], top[..., x_hi], bottom[..., x_lo], bottom[..., x_hi]
    dx = dx.view(1, 1, 1, out_w)
    upper = tl + (tr - tl) * dx
    lower = bl + (br - bl) * dx
    return upper + (lower - upper) * dy.view(1, 1, out_h, 1)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3, as TF) + ReLU."""

    def __init__(self, cin: int, cout: int, **kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's 3x3 average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """``max_pool=True`` in the last block: the TF graph max-pools there (pytorch-fid's ``FIDInceptionE_2``)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """FID Inception-v3. ``forward(images_uint8)`` returns ``{"pool3": (n, 2048), "logits_unbiased": (n, 1008),
    "logits": (n, 1008)}``; ``pool3`` is FID/KID's feature, ``logits_unbiased`` the Inception Score's."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(n, 3, h, w)`` -> float32 ``(n, 3, 299, 299)`` in [-1, 1), torch-fidelity's exact steps."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"expected uint8 (n, 3, h, w) images, got {images.dtype} {tuple(images.shape)}",
                             source="images")
        x = resize_bilinear_tf1(images.float(), (INPUT_SIZE, INPUT_SIZE))
        return (x - 128) / 128  # the graph computes (x-128)*0.0078125; identical in float32

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(images).to(self.fc.weight.dtype)  # (n, 3, 299, 299)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (n, 64, 73, 73)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)  # (n, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # ends (n, 2048, 8, 8)
        pool3 = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (n, 2048)
        unbiased = pool3 @ self.fc.weight.T  # (n, 1008): the Inception Score uses the logits without bias
        return {"pool3": pool3.float(), "logits_unbiased": unbiased.float(),
                "logits": (unbiased + self.fc.bias).float()}


def fid_inception_v3(weights: str | Path | None = None, check: bool = True) -> FIDInceptionV3:
    """The FID Inception in eval mode with the official weights from a local file (see ``weights.py``).

    ``weights=None`` searches ``$XMODAL_WEIGHTS`` and the user cache; missing weights raise
    :class:`~xmodal.errors.MissingWeightsError`.
    """
    model = FIDInceptionV3()
    model.load_state_dict(load_weights(WEIGHTS, weights, check=check))
    return model.eval().requires_grad_(False)

