"""Genre accuracy of generated music, as a protocol.

No public reference genre classifier exists for this metric: papers that report "genre accuracy" (e.g.
D2M-GAN, CDCD on AIST++) train their own classifier and do not release it. So this module does not pretend
to a canonical number. It fixes the protocol instead:

1. Train (or load) a small classifier on the user's *labelled real* audio: :meth:`GenreClassifier.fit`.
2. Classify each generated clip and compare with the genre it was conditioned on: :func:`genre_accuracy`.
3. Report the classifier's own held-out accuracy on real audio next to it (:func:`genre_accuracy` on real
   clips), since generated-clip accuracy means little without it.

The classifier is multinomial logistic regression (trained with full-batch L-BFGS, deterministic) on clip
statistics: mean and standard deviation over frames of 20 MFCCs, 12 chroma bins, 7 spectral-contrast bands
and the spectral centroid, computed with librosa at 22050 Hz. It is saved as safetensors plus JSON (no
pickle).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xmodal.errors import ConfigError, MetricInputError, MissingWeightsError, require_module

FEATURE_SR = 22050


def clip_features(audio, sr: int) -> np.ndarray:
    """float64 (80,) clip statistics: mean and std of MFCC(20), chroma(12), contrast(7), centroid(1)."""
    from xmodal.metrics.music.beats import as_mono

    librosa = require_module("librosa", extra="music")
    x = as_mono(audio, "audio")
    if sr != FEATURE_SR:
        x = librosa.resample(x, orig_sr=sr, target_sr=FEATURE_SR)
    frames = np.concatenate(
        [
            librosa.feature.mfcc(y=x, sr=FEATURE_SR, n_mfcc=20),
            librosa.feature.chroma_stft(y=x, sr=FEATURE_SR),
            librosa.feature.spectral_contrast(y=x, sr=FEATURE_SR),
            librosa.feature.spectral_centroid(y=x, sr=FEATURE_SR) / 1000.0,
        ]
    )  # (40, frames)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)]).astype(np.float64)


@dataclass
class GenreClassifier:
    """Logistic regression over :func:`clip_features`; ``labels[i]`` is class ``i``."""

    labels: list[str]
    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor  # (classes,)
    mean: torch.Tensor  # (features,) standardisation
    std: torch.Tensor

    @classmethod
    def fit(
        cls,
        clips: Sequence,
        genres: Sequence[str],
        sr: int,
        l2: float = 1e-2,
        features: np.ndarray | None = None,
    ) -> GenreClassifier:
        """Train on labelled real clips (mono arrays at rate ``sr``); ``features`` skips extraction."""
        if len(genres) == 0 or (features is None and len(clips) != len(genres)):
            raise MetricInputError(
                f"need one genre per clip, got {len(clips)} clips and {len(genres)} genres"
            )
        labels = sorted(set(genres))
        if len(labels) < 2:
            raise MetricInputError(f"need at least two genres to train a classifier, got {labels}")
        feats = features if features is not None else np.stack([clip_features(c, sr) for c in clips])
        x = torch.as_tensor(feats, dtype=torch.float64)
        y = torch.as_tensor([labels.index(g) for g in genres])
        mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
        xs = (x - mean) / std
        w = torch.zeros(len(labels), x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(labels), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xs @ w.T + b, y) + l2 * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(labels, w.detach(), b.detach(), mean, std)

    def predict_features(self, feats: np.ndarray) -> list[str]:
        x = (torch.as_tensor(np.atleast_2d(feats), dtype=torch.float64) - self.mean) / self.std
        return [self.labels[i] for i in (x @ self.weight.T + self.bias).argmax(1).tolist()]

    def predict(self, clips: Sequence, sr: int) -> list[str]:
        """Genre of each clip."""
        return self.predict_features(np.stack([clip_features(c, sr) for c in clips]))

    def save(self, directory: str | Path) -> None:
        """``directory/genre_classifier.safetensors`` and ``.json``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file(
            {"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std},
            str(d / "genre_classifier.safetensors"),
        )
        (d / "genre_classifier.json").write_text(
            json.dumps({"labels": self.labels, "feature_sr": FEATURE_SR})
        )

    @classmethod
    def load(cls, directory: str | Path) -> GenreClassifier:
        from safetensors.torch import load_file

        d = Path(directory)
        st, meta = d / "genre_classifier.safetensors", d / "genre_classifier.json"
        if not st.is_file() or not meta.is_file():
            raise MissingWeightsError(
                f"{d}: expected genre_classifier.safetensors and genre_classifier.json "
                "(written by GenreClassifier.save)"
            )
        info = json.loads(meta.read_text())
        if info.get("feature_sr") != FEATURE_SR:
            raise ConfigError(f"{meta}: feature_sr {info.get('feature_sr')} != {FEATURE_SR}")
        t = load_file(str(st))
        return cls(list(info["labels"]), t["weight"], t["bias"], t["mean"], t["std"])


@dataclass
class GenreAccuracy:
    """Share of clips classified as their conditioning genre, per genre and overall, with the confusion."""

    accuracy: float
    per_genre: dict[str, float]
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # conditioning -> predicted -> count
    n: int = 0


def genre_accuracy(
    classifier: GenreClassifier, clips: Sequence, conditioning_genres: Sequence[str], sr: int
) -> GenreAccuracy:
    """Classify ``clips`` and score them against the genre each was generated for (a protocol, no reference)."""
    if len(clips) != len(conditioning_genres) or not clips:
        raise MetricInputError(
            f"need one conditioning genre per clip, got {len(clips)} clips and "
            f"{len(conditioning_genres)} genres"
        )
    unknown = sorted(set(conditioning_genres) - set(classifier.labels))
    if unknown:
        raise MetricInputError(f"genres {unknown} are not among the classifier's labels {classifier.labels}")
    return score_predictions(classifier.predict(clips, sr), conditioning_genres)


def score_predictions(predicted: Sequence[str], conditioning_genres: Sequence[str]) -> GenreAccuracy:
    """Accuracy, per-genre accuracy and confusion counts of predicted vs conditioning genres."""
    confusion: dict[str, dict[str, int]] = {}
    for want, got in zip(conditioning_genres, predicted):
        row = confusion.setdefault(want, {})
        row[got] = row.get(got, 0) + 1
    per = {g: row.get(g, 0) / sum(row.values()) for g, row in sorted(confusion.items())}
    correct = sum(w == g for w, g in zip(conditioning_genres, predicted))
    return GenreAccuracy(correct / len(predicted), per, confusion, len(predicted))
