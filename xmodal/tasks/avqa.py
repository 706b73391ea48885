"""Audio-visual question answering (MUSIC-AVQA): one answer per question about a 10-s clip.

Data: the official ``avqa-{train,val,test}.json`` under ``data.root`` (read with
:mod:`xmodal.data.benchmarks.music_avqa`) and the clips ``<data.videos>/<video_id>.mp4``, decoded into
per-segment stereo audio, 7 x 7 visual maps (of the sprite encoder trained here, or raw pixel cells:
``data.visual``) and acoustic features (:mod:`xmodal.tasks.avqa_features`, cached) and
standardised by the training clips' statistics. Questions are tokenised as the official loader does
(placeholders filled, the ``?`` dropped); the word vocabulary and the answer vocabulary come from the training
split (an unseen word is ``<unk>``; a held-out question whose answer never occurs in training is simply wrong).

Model: AVST (:class:`xmodal.tasks.models.avst.AVST`: audio-guided spatial grounding with the match loss,
question-guided temporal grounding) on a small CNN over the 7 x 7 grid trained end to end, with the question
encoder that the ``question`` modality's spec names (a transformer over tokens) or the reference's LSTM
(``model.question_encoder``), and the acoustic branch when ``model.acoustic``. Metric: the official accuracy per
question type, per scenario and overall (:func:`xmodal.metrics.avqa.avqa_accuracy`, percent). Baselines on the
held-out split: chance, the majority answer per question type, and small networks (scikit-learn MLPs) of the
question alone, of the question with the audio and of the question with the frames. Predictions:
``{"<question_id>": "<answer>"}``, the file ``xmodal eval avqa`` reads.

Precomputed features: ``data.features`` names a folder in the benchmark's layout (``vggish/<video_id>.npy``,
``res18_14x14/<video_id>.npy``: :func:`read_official_features`; :func:`write_official_features` writes it from
the clips). Additions to AVST (switches): ``model.counting``, ``model.evidence`` (:mod:`xmodal.tasks.avqa_evidence`)
``model.pointer`` (a logit per named object for the answers that name it) and ``model.loudness`` (the
evidence's audio stream also gets each named class's loudness unmixed from the segments' power, the segment
level and how many classes are heard over the clip: :func:`xmodal.tasks.avqa_evidence.clip_loudness`).

Recipe sections: ``data: {root, eval_split, videos, visual, features, cache}`` and ``model: {dim, heads,
question_encoder, question_layers, question_len, acoustic, counting, evidence, pointer, loudness, louder,
match_weight}``; ``model.louder`` (with ``model.evidence`` and ``model.loudness``) adds :class:`LouderHead` to the
answer logits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.data.benchmarks.music_avqa import AVQA_TYPES, AVQARecord, read_avqa
from xmodal.errors import ConfigError, DataError
from xmodal.tasks import av_segments, avqa_features, pipeline
from xmodal.tasks.base import TaskBundle

PAD, UNK = "<pad>", "<unk>"


@dataclass
class DataConfig:
    root: str = "data/music-avqa-scenes"
    eval_split: Literal["val", "test"] = "test"
    videos: str = "MUSIC-AVQA-videos"  # folder of <video_id>.mp4 under root
    visual: Literal["pixels", "sprite_encoder"] = "sprite_encoder"  # frame features (see avqa_features)
    features: str | None = None  # precomputed features: a folder with vggish/ and res18_14x14/ (data/feats)
    cache: str | None = None  # feature cache folder; default $XMODAL_CACHE/features


@dataclass
class ModelConfig:
    dim: int = 64
    heads: int = 4
    question_encoder: Literal["spec", "transformer", "lstm"] = "spec"  # spec: the question modality's default
    question_layers: int = 1
    question_len: int = 16  # tokens, padded as the official loader pads (it uses 14; a scene question has 15)
    acoustic: bool = True
    counting: bool = True  # question-guided counting over the map's cells
    evidence: bool = True  # the encoders' class evidence for the question's named objects (avqa_evidence)
    pointer: bool = True  # answers naming one of the question's objects also get a logit per named object
    loudness: bool = True  # the evidence's audio stream also gets the clip's loudness (avqa_evidence.clip_loudness)
    louder: bool = False  # with evidence and loudness: "yes"/"no" get a gated logit of the named classes' difference
    louder_db: float = 1.0  # the loudness difference (dB) that gives the louder logit 1 at gate 1 (10: too slow)
    match_weight: float = 0.5


def _configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig]:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    for key in ("dim", "heads", "question_layers", "question_len"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(m, key)}")
    if m.dim % m.heads:
        raise ConfigError(f"model.heads: must divide model.dim ({m.dim}), got {m.heads}")
    if m.match_weight < 0:
        raise ConfigError(f"model.match_weight: must be >= 0, got {m.match_weight}")
    if d.features is not None and m.acoustic:
        raise ConfigError("model.acoustic: the precomputed features hold no acoustic descriptors; set it false")
    if m.evidence and (d.features is not None or d.visual != "sprite_encoder"):
        raise ConfigError("model.evidence: class evidence comes from the encoders (data.visual=sprite_encoder on "
                          "raw clips, no data.features); set it false")
    return d, m


def check(cfg: dict[str, Any]) -> None:
    _configs(cfg)


# ---------------------------------------------------------------- data

class QuestionDataset(Dataset):
    """Samples ``{"id", "audio", "visual", "acoustic", "question", "named", "answer"}`` (and the clip's class
    evidence when it has it): one per question entry; the clip features are shared by the questions of a clip.
    ``named`` holds the evidence classes the question names (:func:`xmodal.tasks.avqa_evidence.named_classes`)."""

    def __init__(self, records: list[AVQARecord], clips: list[dict[str, torch.Tensor]], clip_of: list[int],
                 questions: torch.Tensor, answers: torch.Tensor) -> None:
        from xmodal.tasks.avqa_evidence import named_classes

        self.records, self.clips, self.clip_of = records, clips, clip_of
        self.questions, self.answers = questions, answers  # (N, question_len) ids, (N,) answer index or -1
        self.ids = [str(r.question_id) for r in records]
        self.named = torch.tensor([named_classes(r.question_tokens(), avqa_features.EVIDENCE_CLASSES)
                                   for r in records], dtype=torch.long).reshape(len(records), -1)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": self.ids[index], **self.clips[self.clip_of[index]], "question": self.questions[index],
                "named": self.named[index], "answer": self.answers[index]}


def _encode(records: list[AVQARecord], vocab: dict[str, int], length: int, path: Path) -> torch.Tensor:
    out = torch.zeros(len(records), length, dtype=torch.long)
    for i, r in enumerate(records):
        ids = [vocab.get(w, vocab[UNK]) for w in r.question_tokens()]
        if len(ids) > length:
            raise DataError(f"question_id {r.question_id}: {len(ids)} tokens exceed model.question_len={length}",
                            path)
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def _load_split(d: DataConfig, split: str) -> tuple[list[AVQARecord], list[str], list[dict[str, torch.Tensor]]]:
    path = Path(d.root) / f"avqa-{split}.json"
    records = read_avqa(path)
    if not records:
        raise DataError("the split holds no questions", path)
    videos = sorted({r.video_id for r in records})
    if d.features is not None:
        return records, videos, [read_official_features(Path(d.features), v) for v in videos]
    clips = avqa_features.clip_features([Path(d.root) / d.videos / f"{v}.mp4" for v in videos], d.cache,
                                        d.visual)
    return records, videos, clips


# the benchmark's feature folders (data/feats): VGGish (T, 128) and ResNet-18 maps (T, 512, 14, 14), one row a
# second; the official loader keeps every sixth of the 60 rows, one per 1-s segment of its 10 segments
AUDIO_FEATURES, VISUAL_FEATURES = "vggish", "res18_14x14"
SEGMENTS = 10


def _rows(path: Path, ndim: int) -> np.ndarray:
    """The ``SEGMENTS`` evenly spaced rows of a feature file (every sixth of 60, as the official loader)."""
    if not path.is_file():
        raise DataError("feature file not found", path)
    x = np.load(path)
    if x.ndim != ndim or len(x) == 0 or len(x) % SEGMENTS:
        raise DataError(f"expected {ndim} dimensions and a multiple of {SEGMENTS} rows, got shape {x.shape}", path)
    return np.ascontiguousarray(x[:: len(x) // SEGMENTS], dtype=np.float32)


def read_official_features(folder: Path, video_id: str) -> dict[str, torch.Tensor]:
    """``{"audio": (10, D), "visual": (10, H, W, C)}`` of one video from the benchmark's layout:
    ``<folder>/vggish/<video_id>.npy`` ``(R, D)`` and ``<folder>/res18_14x14/<video_id>.npy`` ``(R, C, H, W)``
    (R a multiple of 10: 60 on MUSIC-AVQA, one row a second; every ``R / 10``-th row is kept)."""
    audio = _rows(folder / AUDIO_FEATURES / f"{video_id}.npy", 2)
    visual = _rows(folder / VISUAL_FEATURES / f"{video_id}.npy", 4)
    return {"audio": torch.from_numpy(audio), "visual": torch.from_numpy(visual).permute(0, 2, 3, 1).contiguous()}


def write_official_features(root: Path, cache_dir: str | None = None, videos: str = "MUSIC-AVQA-videos") -> Path:
    """The benchmark's feature layout computed from the clips under ``root`` (a scene build or any folder in the
    official layout), for every video of ``avqa-{train,val,test}.json``: ``feats/vggish/<video_id>.npy``
    ``(10, 192)`` (the stereo log-mel stream of :mod:`xmodal.tasks.avqa_features`, where the benchmark has
    VGGish's 128) and ``feats/res18_14x14/<video_id>.npy`` ``(10, 64, 7, 7)`` (the sprite encoder's maps,
    channels first as the benchmark's ResNet-18 maps), float32, one row per second of the 10-s clips. A recipe
    reads them with ``data.features=<root>/feats model.acoustic=false model.evidence=false``."""
    root = Path(root)
    ids = sorted({r.video_id for s in ("train", "val", "test") for r in read_avqa(root / f"avqa-{s}.json")})
    clips = avqa_features.clip_features([root / videos / f"{v}.mp4" for v in ids], cache_dir, "sprite_encoder")
    out = root / "feats"
    for name in (AUDIO_FEATURES, VISUAL_FEATURES):
        (out / name).mkdir(parents=True, exist_ok=True)
    for video_id, clip in zip(ids, clips, strict=True):
        for name, array in ((AUDIO_FEATURES, clip["audio"]), (VISUAL_FEATURES, clip["visual"].permute(0, 3, 1, 2))):
            path = out / name / f"{video_id}.npy"
            partial_path = path.with_name(f".{path.name}.partial")  # renamed when complete: no half files
            with partial_path.open("wb") as f:
                np.save(f, array.numpy().astype(np.float32))
            partial_path.replace(path)
    return out


def _loudness(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`xmodal.tasks.avqa_evidence.clip_loudness` of a clip with class evidence and band power
    (``audio_power``, unscaled: powers add up), with the classes' templates
    (:func:`xmodal.tasks.avqa_evidence.class_templates`); nothing for a clip without."""
    from xmodal.tasks.avqa_evidence import class_templates, clip_loudness

    if "audio_classes" not in clip or "audio_power" not in clip:
        return {}
    return clip_loudness(clip["audio_power"].numpy(), class_templates())


def _without_power(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The clip less ``audio_power``: only the loudness reads it, and it is not a model input."""
    return {k: v for k, v in clip.items() if k != "audio_power"}


def build_data(cfg: dict[str, Any]) -> tuple[QuestionDataset, QuestionDataset, dict[str, Any]]:
    """The training and held-out datasets, and the vocabularies ``{"words": [...], "answers": [...]}``."""
    d, m = _configs(cfg)
    splits = {s: _load_split(d, s) for s in ("train", d.eval_split)}
    train_records = splits["train"][0]
    words = [PAD, UNK, *sorted({w for r in train_records for w in r.question_tokens()})]
    answers = sorted({r.anser for r in train_records})
    vocab, answer_index = {w: i for i, w in enumerate(words)}, {a: i for i, a in enumerate(answers)}
    scaler = av_segments.Scaler.fit([_without_power(c) for c in splits["train"][2]])

    def dataset(split: str) -> QuestionDataset:
        records, videos, clips = splits[split]
        where = {v: i for i, v in enumerate(videos)}
        # the loudness comes from the unscaled band power (powers add up), so it joins after scaling
        return QuestionDataset(records, [{**scaler(_without_power(c)), **_loudness(c)} for c in clips],
                               [where[r.video_id] for r in records],
                               _encode(records, vocab, m.question_len, Path(d.root) / f"avqa-{split}.json"),
                               torch.tensor([answer_index.get(r.anser, -1) for r in records]))

    return dataset("train"), dataset(d.eval_split), {"words": words, "answers": answers}


# ---------------------------------------------------------------- model

class QuestionTransformer(nn.Module):
    """``(B, L)`` padded ids -> ``(B, dim)``: :class:`xmodal.nn.encoders.transformer.TransformerEncoder` over the
    tokens, mean-pooled over the non-padding ones."""

    def __init__(self, vocab_size: int, dim: int, depth: int, heads: int, max_len: int) -> None:
        super().__init__()
        from xmodal.nn.encoders.transformer import TransformerEncoder

        self.encoder = TransformerEncoder(dim=dim, depth=depth, heads=heads, mlp_ratio=2.0, vocab_size=vocab_size,
                                          max_len=max_len)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens, tokens != 0)


def question_encoder(kind: str, vocab_size: int, m: ModelConfig) -> nn.Module:
    """The question encoder: ``spec`` follows the ``question`` modality's default encoder."""
    from xmodal.modalities import get_modality
    from xmodal.tasks.models.avst import QuestionEncoder

    if kind == "spec":
        kind = get_modality("question").default_encoder
    if kind == "transformer":
        return QuestionTransformer(vocab_size, m.dim, m.question_layers, m.heads, m.question_len)
    if kind == "lstm":
        return QuestionEncoder(vocab_size, m.dim, m.dim, m.dim)
    raise ConfigError(f"model.question_encoder: no question encoder for family {kind!r}; use transformer or lstm")


class LouderHead(nn.Module):
    """``Is the <A> louder than the <B>?`` read straight off the unmixed loudness: ``s = g(q) * (L_A - L_B) / db``
    (``db``: ``model.louder_db``) is added to the "yes" logit and subtracted from the "no" logit, where ``g`` is a
    linear map of the question vector, zero at the start. Why: the difference enters the evidence stream too, but
    through batch norm, projections and attention 52 training questions do not teach the fusion to read its
    sign; one gate per question template does (and learns to stay near zero for the questions the difference
    does not answer)."""

    def __init__(self, dim: int, yes: int, no: int, db: float = 1.0) -> None:
        super().__init__()
        self.yes, self.no, self.db = yes, no, db
        self.gate = nn.Linear(dim, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, logits: torch.Tensor, question: torch.Tensor, difference: torch.Tensor) -> torch.Tensor:
        s = self.gate(question)[:, 0] * difference / self.db
        sign = torch.zeros_like(logits[0])
        sign[self.yes], sign[self.no] = 1.0, -1.0
        return logits + s[:, None] * sign


def named_difference(loudness: torch.Tensor, named: torch.Tensor) -> torch.Tensor:
    """``(B,)``: the first named class's loudness minus the second's from ``(B, K)`` loudness and ``(B, 2)``
    named class indices (``K``: none); 0 where either is missing."""
    k = loudness.shape[1]
    known = (named < k).all(1)
    picked = loudness.gather(1, named.clamp_max(k - 1))
    return (picked[:, 0] - picked[:, 1]) * known


class AVQAModel(nn.Module):
    """``batch -> AVST outputs`` with a two-layer CNN over each segment's ``(7, 7, C)`` grid first."""

    answer_of_class: torch.Tensor

    def __init__(self, vocab_size: int, answers: list[str], audio_dim: int, visual_dim: int, m: ModelConfig
                 ) -> None:
        super().__init__()
        from xmodal.tasks import avqa_evidence as ev
        from xmodal.tasks.models.avst import AVST

        self.acoustic, self.evidence, self.loudness, self.dim = m.acoustic, m.evidence, m.loudness, m.dim
        self.stem = nn.Sequential(nn.Conv2d(visual_dim, m.dim, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(m.dim, m.dim, 3, padding=1), nn.ReLU())
        self.net = AVST(vocab_size, len(answers), audio_dim, m.dim, m.dim, m.heads,
                        avqa_features.ACOUSTIC_DIM if m.acoustic else 0,
                        question_encoder(m.question_encoder, vocab_size, m), counting=m.counting,
                        evidence_dim=ev.AUDIO_DIM + ev.VISUAL_DIM + ev.JOINT_DIM
                        + (ev.LOUDNESS_DIM if m.loudness else 0) if m.evidence else 0)
        # the pointer: the answer index of each evidence class (-1: not an answer; the last entry is "none")
        classes = avqa_features.EVIDENCE_CLASSES
        self.pointer = nn.Linear(m.dim, ev.NAMED) if m.pointer else None
        self.register_buffer("answer_of_class", torch.tensor(
            [answers.index(c) if c in answers else -1 for c in classes] + [-1], dtype=torch.long))
        # the head reads the loudness stream, which exists with the evidence only (as model.loudness does)
        louder = m.louder and m.loudness and m.evidence
        if louder and not {"yes", "no"} <= set(answers):
            raise ConfigError(f"model.louder needs the answers yes and no among the training answers, got {answers}")
        self.louder = LouderHead(m.dim, answers.index("yes"), answers.index("no"), m.louder_db) if louder else None

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        v = batch["visual"]  # (B, T, 7, 7, C)
        b, t, h, w, c = v.shape
        v = self.stem(v.reshape(b * t, h, w, c).permute(0, 3, 1, 2)).reshape(b, t, self.dim, h, w)
        # a lone sample has no other clip to mismatch: its match logits are then unused (evaluation only)
        negative = v if b == 1 else None
        evidence = None
        if self.evidence:
            from xmodal.tasks.avqa_evidence import segment_evidence

            loud = {k: batch[k] for k in ("audio_loudness", "audio_level")} if self.loudness else {}
            streams = segment_evidence(batch["named"], batch["audio_classes"], batch["visual_classes"], **loud)
            evidence = torch.cat([streams["audio"], streams["visual"], streams["joint"]], dim=-1)
        out = self.net(batch["audio"], v, batch["question"], negative,
                       batch.get("acoustic") if self.acoustic else None, evidence)
        if self.pointer is not None:  # "which sounds first, the A or the B?": a logit for A and one for B
            target = self.answer_of_class[batch["named"]]  # (B, 2) answer indices or -1
            scores = self.pointer(out["joint"]) * (target >= 0)
            out["answer_logits"] = out["answer_logits"].scatter_add(1, target.clamp_min(0), scores)
        if self.louder is not None:
            difference = named_difference(batch["audio_loudness"], batch["named"])
            out["answer_logits"] = self.louder(out["answer_logits"], out["question"], difference)
        return out


def avqa_objective(outputs: dict[str, torch.Tensor], batch: dict[str, Any], match_weight: float = 0.5
                   ) -> torch.Tensor:
    from xmodal.tasks.models.avst import avst_loss

    return avst_loss(outputs, batch["answer"], match_weight)


# ---------------------------------------------------------------- evaluation, baselines, predictions

def predicted_answers(model: nn.Module, dataset: QuestionDataset, answers: list[str]) -> dict[str, str]:
    out = av_segments.predict_all(model, dataset)
    return {qid: answers[int(k)] for qid, k in zip(out["id"], out["answer_logits"].argmax(-1))}


def evaluate(model: nn.Module, dataset: QuestionDataset, *, answers: list[str]) -> dict[str, float]:
    from xmodal.metrics.avqa import avqa_accuracy

    return avqa_accuracy(dataset.records, predicted_answers(model, dataset, answers))


def expected_accuracy(records: list[AVQARecord], p_correct: list[float]) -> dict[str, float]:
    """The keys of :func:`xmodal.metrics.avqa.avqa_accuracy`, pooled the same way, from each question's
    probability of being answered correctly (for the chance baseline)."""
    out: dict[str, float] = {}
    for scenario in ("Audio", "Visual", "Audio-Visual"):
        kinds = [t for t in AVQA_TYPES if t[0] == scenario]
        pooled: list[float] = []
        for t in kinds:
            ps = [p for r, p in zip(records, p_correct) if tuple(r.type) == t]
            if ps:
                out[f"{scenario}/{t[1]}"] = 100 * float(np.mean(ps))
            pooled += ps
        if pooled:
            out[f"{scenario}/Avg"] = 100 * float(np.mean(pooled))
    out["Overall"] = 100 * float(np.mean(p_correct))
    return out


def _question_onehot(dataset: QuestionDataset, vocab_size: int) -> np.ndarray:
    """Each token position one-hot: ``(N, question_len * vocab)``; word order is kept."""
    q = dataset.questions.numpy()
    out = np.zeros((len(q), q.shape[1], vocab_size), np.float32)
    np.put_along_axis(out, q[..., None], 1.0, axis=-1)
    out[..., 0] = 0.0  # padding carries nothing
    return out.reshape(len(q), -1)


def _segment_rows(dataset: QuestionDataset, stream: str) -> np.ndarray:
    """``(clips, T, cells, channels)``: the audio with its acoustic descriptors as one cell per segment, or the
    visual grid's 49 cells."""
    clips = dataset.clips
    if stream == "audio":
        keys = [k for k in ("audio", "acoustic") if k in clips[0]]
        return np.stack([np.concatenate([c[k].numpy() for k in keys], -1)[:, None] for c in clips])
    grids = np.stack([c["visual"].numpy() for c in clips])  # (clips, T, 7, 7, C)
    return grids.reshape(grids.shape[0], grids.shape[1], -1, grids.shape[-1])


def _clip_streams(rows: np.ndarray, pca: Any) -> np.ndarray:
    """Per-clip features of one stream, every cell reduced by ``pca`` (fitted on the training cells): each
    cell's mean over time, and each segment's mean and max over cells (for audio: the segments in order)."""
    n, t, k, ch = rows.shape
    small = pca.transform(rows.reshape(-1, ch)).reshape(n, t, k, -1)
    parts = [small.reshape(n, -1)] if k == 1 else [small.mean(1).reshape(n, -1), small.mean(2).reshape(n, -1),
                                                   small.max(2).reshape(n, -1)]
    return np.concatenate(parts, axis=1)


def _question_evidence(dataset: QuestionDataset, stream: str, loudness: bool = True) -> np.ndarray | None:
    """``(N, T * F + 3F)``: one modality's evidence for each question's named objects
    (:func:`xmodal.tasks.avqa_evidence.segment_evidence`, ``audio`` or ``visual``), its segments in order and
    its clip summary; None when the clips hold no class evidence."""
    from xmodal.tasks.avqa_evidence import segment_evidence
    from xmodal.tasks.models.avst import clip_summary

    key = f"{stream}_classes"
    if key not in dataset.clips[0]:
        return None
    # the audio stream with the clip's loudness where the clips have it, as the model's (model.loudness)
    keys = [key, *(k for k in ("audio_loudness", "audio_level") if stream == "audio" and k in dataset.clips[0]
                   and loudness)]
    inputs = {k: torch.stack([c[k] for c in dataset.clips])[dataset.clip_of] for k in keys}
    e = segment_evidence(dataset.named, **inputs)[stream]
    return torch.cat([e.flatten(1), clip_summary(e)], 1).numpy()


def _mlp_answers(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
    """A one-hidden-layer MLP (scikit-learn, standardised inputs, fixed seed) fitted on the training questions."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    with threadpool_limits(torch.get_num_threads()):
        clf = make_pipeline(StandardScaler(), MLPClassifier((64,), alpha=1e-2, max_iter=200, random_state=0))
        return clf.fit(x_train, y_train).predict(x_eval)


def baselines(dataset: QuestionDataset, *, train_set: QuestionDataset, words: list[str], answers: list[str],
              loudness: bool = True) -> dict[str, dict[str, float]]:
    """Chance (a uniform guess among the training answers of the question's type: its expected accuracy),
    majority (the commonest training answer of the question's type), and MLPs of the question alone, of the
    question with the clip's audio (``audio_only``: 16 principal components of each segment's audio and
    acoustic features, in order) and of the question with the clip's frames (``visual_only``: 8 principal
    components of each grid cell, averaged over time per cell and pooled over cells per segment). Where the
    clips hold the encoders' class evidence, each single-modality baseline also gets its modality's evidence for
    the question's named objects, per segment and summarised, as the model does
    (:mod:`xmodal.tasks.avqa_evidence`; the audio evidence with the clip's loudness when ``loudness``, as
    ``model.loudness`` gives it to the model)."""
    from sklearn.decomposition import PCA

    from xmodal.metrics.avqa import avqa_accuracy

    by_type: dict[tuple[str, ...], Counter] = {}
    for r in train_set.records:
        by_type.setdefault(tuple(r.type), Counter())[r.anser] += 1
    overall = Counter(r.anser for r in train_set.records)
    chance = [1 / len(by_type[tuple(r.type)]) if r.anser in by_type.get(tuple(r.type), ()) else 0.0
              for r in dataset.records]
    majority = {qid: by_type.get(tuple(r.type), overall).most_common(1)[0][0]
                for qid, r in zip(dataset.ids, dataset.records)}
    table = {"chance": expected_accuracy(dataset.records, chance),
             "majority": avqa_accuracy(dataset.records, majority)}
    y_train = train_set.answers.numpy()
    q_train, q_eval = _question_onehot(train_set, len(words)), _question_onehot(dataset, len(words))
    inputs = {"question_only": (q_train, q_eval)}
    for name, stream, components in (("audio_only", "audio", 16), ("visual_only", "visual", 8)):
        rows_train, rows_eval = _segment_rows(train_set, stream), _segment_rows(dataset, stream)
        pca = PCA(components, random_state=0).fit(rows_train.reshape(-1, rows_train.shape[-1]))
        a_train, a_eval = _clip_streams(rows_train, pca), _clip_streams(rows_eval, pca)
        parts_train, parts_eval = [q_train, a_train[train_set.clip_of]], [q_eval, a_eval[dataset.clip_of]]
        e_train = _question_evidence(train_set, stream, loudness)
        e_eval = _question_evidence(dataset, stream, loudness)
        if e_train is not None and e_eval is not None:
            parts_train, parts_eval = [*parts_train, e_train], [*parts_eval, e_eval]
        inputs[name] = (np.concatenate(parts_train, 1), np.concatenate(parts_eval, 1))
    for name, (x_train, x_eval) in inputs.items():
        pred = _mlp_answers(x_train, y_train, x_eval)
        table[name] = avqa_accuracy(dataset.records, {q: answers[int(k)] for q, k in zip(dataset.ids, pred)})
    return table


def write_predictions(model: nn.Module, dataset: QuestionDataset, path: Path, *, answers: list[str]) -> Path:
    """``{"<question_id>": "<answer>"}`` as ``xmodal eval avqa --predictions`` reads it."""
    return pipeline.write_json(path, predicted_answers(model, dataset, answers), indent=1)


def build(cfg: dict[str, Any]) -> TaskBundle:
    d, m = _configs(cfg)
    train_set, eval_set, vocab = build_data(cfg)
    first = train_set.clips[0]
    model = AVQAModel(len(vocab["words"]), vocab["answers"], first["audio"].shape[-1],
                      first["visual"].shape[-1], m)
    return TaskBundle(model=model, loss=partial(avqa_objective, match_weight=m.match_weight), train_set=train_set,
                      collate=av_segments.collate, val_set=eval_set,
                      evaluate=partial(evaluate, answers=vocab["answers"]), primary="Overall",
                      baselines=partial(baselines, train_set=train_set, loudness=m.loudness, **vocab),
                      predict=partial(write_predictions, answers=vocab["answers"]), artifacts=vocab,
                      split=d.eval_split)
