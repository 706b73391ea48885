"""Video: ``num_frames`` uniformly spaced RGB frames, resized, in [0, 1], plus the audio track when asked."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.transforms.base import Transform, register_transform


@register_transform("video_frames", modalities=("video",))
class VideoTransform(Transform):
    """Path -> ``{"frames": float32 (T, 3, H, W) in [0, 1]}``, and with ``with_audio`` also ``"audio"``:
    float32 (1, time) mono at ``sample_rate`` (zeros of length 0 when the file has no audio track, with
    ``"has_audio"`` 0, so a batch can mask it)."""

    defaults: ClassVar[dict[str, Any]] = {"num_frames": 8, "size": (64, 64), "with_audio": False, "sample_rate": 16000}
    expensive = True

    def apply(self, value: Any) -> dict[str, torch.Tensor]:
        from PIL import Image

        from xmodal.data.io import read_video, resample

        p = self.params
        # None: the audio track if the file has one (True would make a silent video an error)
        clip = read_video(value, num_frames=p["num_frames"], with_audio=None if p["with_audio"] else False)
        h, w = p["size"]
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BILINEAR))
                           for f in clip.frames])  # (T, H, W, 3)
        out = {"frames": torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)}
        if p["with_audio"]:
            if clip.audio is None:
                out["audio"], out["has_audio"] = torch.zeros(1, 0), torch.tensor(0)
            else:
                assert clip.sample_rate is not None  # the decoder returns audio with its rate
                mono = resample(clip.audio.mean(axis=0), clip.sample_rate, p["sample_rate"])
                out["audio"], out["has_audio"] = torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0), \
                    torch.tensor(1)
        return out
