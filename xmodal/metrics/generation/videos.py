"""FVD on folders of videos.

Protocol (StyleGAN-V, Skorokhodov et al. 2022, ``fvd2048_16f``): one clip of ``clip_length=16`` consecutive
frames per video, taken from the first frame (StyleGAN-V takes generated clips from frame 0; pass
``offset`` to move it), at most ``max_clips=2048`` videos per side in sorted order, videos shorter than the
clip are skipped (``discard_short_videos``) and counted; frames are resized to 224x224 with TF1 bilinear (as the
original TF FVD; StyleGAN-V's TorchScript port differs only here), scaled to [-1, 1]; features are the I3D
400-d logits; the covariance is biased (divide by n) as StyleGAN-V (``unbiased=True`` gives the original TF-GAN
FVD). The value depends on every one of these choices: report them with the number (``fvd_protocol``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xmodal.data.io._common import list_files
from xmodal.errors import CorruptFileError, EmptyInputError, MetricInputError
from xmodal.metrics.generation.cache import FeatureCache, files_digest, model_fingerprint
from xmodal.metrics.vision import fid_from_features
from xmodal.pretrained.i3d import I3D

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")


def list_videos(folder: str | Path) -> list[Path]:
    """Video files under ``folder`` (recursive), sorted; raises if there are none."""
    return list_files(folder, VIDEO_SUFFIXES, "videos")


def read_clip(path: Path, clip_length: int, offset: int = 0) -> np.ndarray | None:
    """``clip_length`` consecutive RGB frames ``(t, h, w, 3)`` uint8 from frame ``offset``; None if too short."""
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= offset:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == clip_length:
                    return np.stack(frames)
    except av.FFmpegError as exc:
        raise CorruptFileError(f"cannot decode video ({exc})", source=path) from exc
    return None


@torch.no_grad()
def i3d_folder_features(
    folder: str | Path,
    model: I3D,
    clip_length: int = 16,
    max_clips: int = 2048,
    offset: int = 0,
    cache: FeatureCache | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[torch.Tensor, int]:
    """``((n, 400) I3D logits, number of videos skipped as too short)`` for a folder of videos."""
    from tqdm import tqdm

    files = list_videos(folder)[:max_clips]
    cache = cache or FeatureCache(enabled=False)
    key = cache.key(
        files_digest(files, Path(folder)),
        "i3d:" + model_fingerprint(model),
        {
            "clip_length": clip_length,
            "offset": offset,
            "max_clips": max_clips,
            "resize": "tf1-bilinear-224",
            "scale": "2x/255-1",
        },
    )
    hit = cache.get(key)
    if hit is not None:
        return hit["features"], int(hit["skipped"])
    feats, skipped = [], 0
    model = model.to(device)
    for f in tqdm(files, desc=f"I3D {Path(folder).name}", unit="video", disable=not progress):
        clip = read_clip(f, clip_length, offset)
        if clip is None:
            skipped += 1
            continue
        feats.append(model.features(torch.from_numpy(clip).unsqueeze(0).to(device)).cpu())
    if not feats:
        raise EmptyInputError(f"no video has {clip_length + offset} frames", source=folder)
    out = torch.cat(feats)
    cache.put(key, {"features": out, "skipped": torch.tensor(skipped)}, {"folder": str(folder)})
    return out, skipped


def fvd_folders(
    real: str | Path,
    fake: str | Path,
    model: I3D,
    clip_length: int = 16,
    max_clips: int = 2048,
    offset: int = 0,
    unbiased: bool = False,
    cache: FeatureCache | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, float | int | str]:
    """FVD between two folders of videos, StyleGAN-V's protocol by default (see the module docstring)."""
    real_f, real_skip = i3d_folder_features(
        real, model, clip_length, max_clips, offset, cache, device, progress
    )
    fake_f, fake_skip = i3d_folder_features(
        fake, model, clip_length, max_clips, offset, cache, device, progress
    )
    if min(len(real_f), len(fake_f)) < 2:
        raise MetricInputError(
            f"FVD needs at least 2 clips per side, got real {len(real_f)}, fake {len(fake_f)}",
            source="videos",
        )
    return {
        "fvd": fid_from_features(real_f, fake_f, unbiased=unbiased),
        "num_real": len(real_f),
        "num_fake": len(fake_f),
        "skipped_real": real_skip,
        "skipped_fake": fake_skip,
        "fvd_protocol": f"{clip_length} consecutive frames from frame {offset}, <= {max_clips} videos, "
        f"TF1 bilinear 224, I3D logits, {'unbiased' if unbiased else 'biased'} covariance",
    }
