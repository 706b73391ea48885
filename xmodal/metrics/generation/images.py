"""FID, KID and Inception Score on folders of images, with torch-fidelity's protocol.

Images are decoded with PIL to 8-bit RGB (as torch-fidelity's ``ImagesPathDataset``), fed as uint8 to the FID
Inception (TF1 bilinear resize to 299 inside), and the metrics are computed from ``pool3`` (FID, KID) and the
bias-free 1008 logits (IS). Features are cached (see ``cache.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from xmodal.data.io import read_image
from xmodal.data.io._common import list_files
from xmodal.data.io.image import image_suffixes
from xmodal.errors import MetricInputError
from xmodal.metrics.generation.cache import FeatureCache, files_digest, model_fingerprint
from xmodal.metrics.vision import fid_from_features, inception_score_from_logits, kid_from_features

IMAGE_SUFFIXES = image_suffixes()  # every format read_image decodes (pytorch-fid's .pgm/.ppm included)


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted; raises if there are none."""
    return list_files(folder, IMAGE_SUFFIXES, "images")


def read_rgb_uint8(path: Path) -> torch.Tensor:
    """``(3, h, w)`` uint8 RGB."""
    return torch.from_numpy(read_image(path)).permute(2, 0, 1)


def _batches_same_size(files: list[Path], batch_size: int) -> Iterable[torch.Tensor]:
    """Consecutive images stacked while they share a size (the network resizes each image itself)."""
    batch: list[torch.Tensor] = []
    for f in files:
        img = read_rgb_uint8(f)
        if batch and (img.shape != batch[0].shape or len(batch) == batch_size):
            yield torch.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield torch.stack(batch)


@torch.no_grad()
def inception_folder_features(
    folder: str | Path,
    model: nn.Module,
    batch_size: int = 32,
    cache: FeatureCache | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """``{"pool3": (n, 2048), "logits_unbiased": (n, 1008)}`` for every image in ``folder`` (sorted order)."""
    from tqdm import tqdm

    files = list_images(folder)
    cache = cache or FeatureCache(enabled=False)
    key = cache.key(
        files_digest(files, Path(folder)),
        "fid-inception-2015-12-05:" + model_fingerprint(model),
        {"decode": "PIL RGB uint8", "resize": "tf1-bilinear-299", "norm": "(x-128)/128"},
    )
    hit = cache.get(key)
    if hit is not None:
        return hit
    out: dict[str, list[torch.Tensor]] = {"pool3": [], "logits_unbiased": []}
    model = model.to(device)
    with tqdm(
        total=len(files), desc=f"Inception {Path(folder).name}", unit="img", disable=not progress
    ) as bar:
        for batch in _batches_same_size(files, batch_size):
            feats = model(batch.to(device))
            for k in out:
                out[k].append(feats[k].cpu())
            bar.update(len(batch))
    result = {k: torch.cat(v) for k, v in out.items()}
    cache.put(key, result, {"folder": str(folder), "count": str(len(files))})
    return result


def image_metrics(
    real: str | Path | None,
    fake: str | Path,
    metrics: list[str],
    model: nn.Module,
    batch_size: int = 32,
    cache: FeatureCache | None = None,
    is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, float | int]:
    """FID / KID (real vs fake) and IS (fake) on image folders, torch-fidelity's protocol.

    KID's subset size is lowered to the smaller folder's size when that is below ``kid_subset_size`` (and
    reported as ``kid_subset_size``), since torch-fidelity would refuse.
    """
    unknown = set(metrics) - {"fid", "is", "kid"}
    if unknown:
        raise MetricInputError(
            f"unknown image metrics {sorted(unknown)}; choose from fid, is, kid", source="metrics"
        )
    fake_f = inception_folder_features(fake, model, batch_size, cache, device, progress)
    out: dict[str, float | int] = {"num_fake": int(fake_f["pool3"].shape[0])}
    if "is" in metrics:
        out["is_mean"], out["is_std"] = inception_score_from_logits(
            fake_f["logits_unbiased"], splits=is_splits
        )
    if "fid" in metrics or "kid" in metrics:
        if real is None:
            raise MetricInputError("FID and KID need a folder of real images", source="real")
        real_f = inception_folder_features(real, model, batch_size, cache, device, progress)
        out["num_real"] = int(real_f["pool3"].shape[0])
        if "fid" in metrics:
            out["fid"] = fid_from_features(real_f["pool3"], fake_f["pool3"])
        if "kid" in metrics:
            size = int(min(kid_subset_size, out["num_real"], out["num_fake"]))
            out["kid_mean"], out["kid_std"] = kid_from_features(
                real_f["pool3"], fake_f["pool3"], subsets=kid_subsets, subset_size=size
            )
            out["kid_subset_size"] = size
    return out
