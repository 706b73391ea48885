"""How well the AVQA loudness stream answers "Is the <A> louder than the <B>?" by itself: the share of a MUSIC-AVQA
scene build's Audio/Comparative questions whose answer is the sign of the unmixed loudness difference of the two
named instruments, per split, for the committed estimator (:func:`xmodal.tasks.avqa_evidence.clip_loudness`:
band power unmixed by the classes' spectral templates) and for the one it replaced (the segments' mid-channel
mean log-mel power unmixed by the sound encoder's evidence, non-negative least squares with a 0.05 ridge). Also
the sound encoder's recall and precision at 0.5 against the build's segment labels (``scenes.jsonl``: a class
sounds in a segment for more than half of it), what the replaced estimator leaned on.

    XMODAL_CACHE=... .venv/bin/python benchmarks/avqa_loudness.py --root data/music-avqa-scenes

Features come from the cache the task uses (computed there on first use).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def previous_loudness(heard: np.ndarray, log_mel: np.ndarray, ridge: float = 0.05) -> np.ndarray:
    """The replaced estimator: ``power_t ~ sum_k heard_tk x_k`` over the segments (mid channel, mean log-mel
    summed over bands, divided by the clip's mean), ``x >= 0`` with a ridge; dB."""
    from scipy.optimize import nnls

    power = np.exp(log_mel.astype(np.float64)).sum(1)
    power = power / power.mean()
    k = heard.shape[1]
    x, _ = nnls(np.vstack([heard.astype(np.float64), ridge * np.eye(k)]), np.concatenate([power, np.zeros(k)]))
    return 10 * np.log10(np.maximum(x, 1e-3))


def main() -> None:
    from xmodal.data.benchmarks.music_avqa import read_avqa
    from xmodal.tasks import avqa_features
    from xmodal.tasks.avqa_evidence import class_templates, clip_loudness

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path("data/music-avqa-scenes"))
    args = ap.parse_args()
    classes = list(avqa_features.EVIDENCE_CLASSES)
    labels = {}
    with open(args.root / "scenes.jsonl") as fh:
        for line in fh:
            scene = json.loads(line)
            labels[scene["id"]] = np.array([[c in seg for c in classes] for seg in scene["segments"]["audio"]])
    templates = class_templates()
    for split in ("train", "val", "test"):
        records = read_avqa(args.root / f"avqa-{split}.json")
        videos = sorted({r.video_id for r in records})
        clips = dict(zip(videos, avqa_features.clip_features(
            [args.root / "MUSIC-AVQA-videos" / f"{v}.mp4" for v in videos], None, "sprite_encoder"), strict=True))
        heard = np.concatenate([clips[v]["audio_classes"].numpy() > 0.5 for v in videos])
        truth = np.concatenate([labels[v] for v in videos])
        right = {"templates": 0, "previous": 0}
        comparative = [r for r in records if tuple(r.type) == ("Audio", "Comparative")]
        for r in comparative:
            clip = clips[r.video_id]
            a, b = (classes.index(c) for c in r.templ_values)
            new = clip_loudness(clip["audio_power"].numpy(), templates)["audio_loudness"].numpy()
            old = previous_loudness(clip["audio_classes"].numpy(), clip["audio"][:, :avqa_features.MELS].numpy())
            for name, loud in (("templates", new), ("previous", old)):
                right[name] += bool(loud[a] > loud[b]) == (r.anser == "yes")
        print(f"{split}: {len(comparative)} comparative questions; sign right: templates {right['templates']}, "
              f"previous {right['previous']}; sound encoder at 0.5: recall {(heard & truth).sum() / truth.sum():.3f}, "
              f"precision {(heard & truth).sum() / max(heard.sum(), 1):.3f}", flush=True)


if __name__ == "__main__":
    main()
