"""Modality specs: what each kind of data *is*, and the encoder family that follows from it.

The survey's organising idea: continuous, redundant "raw" signals (pixels, waveforms) suit convolutional
encoders; compact, discrete "processed" data (tokens, notes, codes) suit transformers; long sequences suit
state-space models; relations suit message passing; unordered point sets suit PointNet. The default encoder of
each spec below is derived from its nature by :func:`default_encoder_for`, not written by hand, so the table
cannot contradict the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xmodal.errors import DataError

_VARIABLE_AXES = ("time", "tokens", "notes", "points", "vertices", "nodes")
FAMILIES = ("visual", "audio", "music", "text", "token", "geometry", "motion", "graph", "tabular")
STRUCTURES = ("grid", "sequence", "set", "relations", "value")


class UnknownModalityError(DataError, KeyError):
    """A modality name is not in the registry. The message names it and lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return ValueError.__str__(self)


def default_encoder_for(continuous: bool, structure: str, spatial_dims: int, long_sequence: bool) -> str:
    """The encoder family that follows from a modality's nature (the survey's rule, in order of precedence).

    relations -> message-passing GNN; point sets -> PointNet; long sequences -> state-space; discrete token
    sequences -> transformer; grids and continuous signals -> convolution of the right dimensionality (a
    discrete grid such as a piano roll is still a grid: convolution follows the layout, not the value type);
    a single value (a table cell) -> an MLP when continuous, an embedding table then an MLP when discrete.
    """
    if structure == "value":
        return "mlp" if continuous else "embedding"
    if structure == "relations":
        return "gnn"
    if structure == "set":
        return "pointnet"
    if long_sequence:
        return "ssm"
    if not continuous and structure == "sequence":
        return "transformer"
    return {1: "cnn1d", 2: "cnn2d", 3: "cnn3d"}.get(spatial_dims, "transformer")


@dataclass(frozen=True)
class ModalitySpec:
    """What a modality is: its family, nature, axes and rate, and the encoder that follows from them.

    ``axes`` name the dimensions of one sample's tensor (batch excluded); a ``str`` modality has ``axes=()``.
    ``rate`` is the typical rate along the time axis (frames/s, samples/s, tokens have none) or ``None``.
    ``spatial_dims`` counts the axes a convolution slides over (time included): 1 for audio, 2 for images,
    3 for video (time, height, width); 0 where convolution does not apply.
    """

    name: str
    family: str
    continuous: bool
    raw: bool
    axes: tuple[str, ...]
    structure: str
    description: str
    rate: float | None = None
    rate_unit: str | None = None
    spatial_dims: int = 0
    long_sequence: bool = False
    dtype: str = "float32"
    file_types: tuple[str, ...] = ()
    rationale: str = ""
    default_encoder: str = field(init=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"modality {self.name!r}: family {self.family!r} not in {FAMILIES}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"modality {self.name!r}: structure {self.structure!r} not in {STRUCTURES}")
        enc = default_encoder_for(self.continuous, self.structure, self.spatial_dims, self.long_sequence)
        object.__setattr__(self, "default_encoder", enc)

    @property
    def nature(self) -> str:
        """e.g. ``"continuous, raw"``."""
        return f"{'continuous' if self.continuous else 'discrete'}, {'raw' if self.raw else 'processed'}"

    @property
    def is_text(self) -> bool:
        """True when a sample holds a Python ``str`` rather than a tensor."""
        return self.family == "text"

    @property
    def length_axis(self) -> int | None:
        """Index of the axis whose length varies between samples (time, tokens, notes, points, nodes), which
        batching pads; ``None`` when every sample has the same shape (images are resized, not padded)."""
        for i, ax in enumerate(self.axes):
            if ax in _VARIABLE_AXES:
                return i
        return None


def _text(name: str, description: str) -> ModalitySpec:
    return ModalitySpec(
        name, "text", continuous=False, raw=False, axes=(), structure="sequence", description=description,
        dtype="str", file_types=(".txt", "inline"),
        rationale="discrete word-pieces carrying dense meaning: self-attention over tokens")


_SPECS: tuple[ModalitySpec, ...] = (
    # visual
    ModalitySpec("image", "visual", True, True, ("channels", "height", "width"), "grid",
                 "RGB picture", spatial_dims=2, file_types=(".png", ".jpg", ".jpeg", ".bmp", ".webp"),
                 rationale="redundant pixels with local 2-D correlation: 2-D convolution"),
    ModalitySpec("video", "visual", True, True, ("time", "channels", "height", "width"), "grid",
                 "RGB frames over time", rate=25.0, rate_unit="frames/s", spatial_dims=3,
                 file_types=(".mp4", ".avi", ".mkv", ".webm"),
                 rationale="pixels correlated in space and time: 3-D (spatio-temporal) convolution"),
    ModalitySpec("optical_flow", "visual", True, False, ("time", "uv", "height", "width"), "grid",
                 "per-pixel motion (dx, dy) between frames", rate=25.0, rate_unit="frames/s", spatial_dims=3,
                 file_types=(".npz", ".flo"),
                 rationale="dense 2-channel motion field over time: 3-D convolution"),
    # audio
    ModalitySpec("waveform", "audio", True, True, ("channels", "time"), "sequence",
                 "audio samples", rate=16000.0, rate_unit="samples/s", spatial_dims=1,
                 file_types=(".wav", ".flac", ".ogg", ".oga", ".mp3"),
                 rationale="raw 1-D signal with local correlation: 1-D convolution"),
    ModalitySpec("spectrogram", "audio", True, False, ("mels", "time"), "grid",
                 "log-mel spectrogram", rate=100.0, rate_unit="frames/s", spatial_dims=2,
                 file_types=(".wav", ".flac", ".ogg", ".oga", ".mp3", ".npz"),
                 rationale="time-frequency image: 2-D convolution"),
    # music
    ModalitySpec("piano_roll", "music", False, False, ("pitch", "time"), "grid",
                 "binary or velocity grid of 128 pitches over time", rate=100.0, rate_unit="frames/s",
                 spatial_dims=2, file_types=(".mid", ".midi", ".npz"),
                 rationale="sparse pitch-time grid, local in pitch and time: 2-D convolution"),
    ModalitySpec("midi_notes", "music", False, False, ("notes", "fields"), "sequence",
                 "note events (start, end, pitch, velocity, program)", dtype="float32",
                 file_types=(".mid", ".midi"),
                 rationale="compact symbolic events: transformer over the note sequence"),
    ModalitySpec("vq_tokens", "token", False, False, ("tokens",), "sequence",
                 "codebook indices from a VQ-VAE or audio codec", dtype="int64", file_types=(".npz",),
                 rationale="discrete codes: transformer"),
    # text (a sample holds a str; tokenisation belongs to the text encoder)
    _text("caption", "a sentence describing an image, clip or sound"),
    _text("dialog", "turns of a conversation about the media"),
    _text("question", "a question about the media"),
    _text("answer", "the answer to a question"),
    _text("asr_transcript", "words spoken in the audio"),
    _text("ocr_transcript", "words written in the image"),
    # geometry and relations
    ModalitySpec("point_cloud", "geometry", True, True, ("points", "xyz"), "set",
                 "unordered 3-D points", file_types=(".ply", ".off", ".npz"),
                 rationale="an unordered set: permutation-invariant PointNet"),
    ModalitySpec("mesh", "geometry", True, False, ("vertices", "xyz"), "relations",
                 "vertices with triangle faces", file_types=(".ply", ".off", ".npz"),
                 rationale="vertices related by edges of faces: message passing over the mesh graph"),
    ModalitySpec("graph", "graph", True, False, ("nodes", "features"), "relations",
                 "node features with an edge index (scene graphs, molecules)", file_types=(".npz", ".json"),
                 rationale="relations between entities: message-passing GNN"),
    # human motion
    ModalitySpec("skeleton_2d", "motion", True, False, ("time", "joints", "xy"), "sequence",
                 "2-D keypoints over time", rate=30.0, rate_unit="frames/s", spatial_dims=1,
                 file_types=(".npz", ".json"),
                 rationale="smooth joint trajectories: 1-D temporal convolution"),
    ModalitySpec("skeleton_3d", "motion", True, False, ("time", "joints", "xyz"), "sequence",
                 "3-D joint positions over time", rate=30.0, rate_unit="frames/s", spatial_dims=1,
                 file_types=(".npz", ".bvh"),
                 rationale="smooth joint trajectories: 1-D temporal convolution"),
    ModalitySpec("smpl", "motion", True, False, ("time", "params"), "sequence",
                 "SMPL pose (72) + shape (10) + translation (3) per frame", rate=30.0, rate_unit="frames/s",
                 long_sequence=True, file_types=(".npz", ".pkl"),
                 rationale="long, low-dimensional parameter sequences (dance, full performances): state-space"),
    # table columns
    ModalitySpec("numeric", "tabular", True, False, ("features",), "value",
                 "one or more continuous scalars of a table row (a number column)", file_types=(".csv", "inline"),
                 rationale="a few continuous values without spatial or temporal layout: MLP"),
    ModalitySpec("categorical", "tabular", False, False, (), "value",
                 "a category index of a table row (a column of labels or codes)", dtype="int64",
                 file_types=(".csv", "inline"),
                 rationale="an unordered discrete choice: learned embedding per category, then MLP"),
)

MODALITIES: dict[str, ModalitySpec] = {s.name: s for s in _SPECS}

# Common spellings people use, mapped to registry names.
ALIASES: dict[str, str] = {
    "audio": "waveform", "wav": "waveform", "mel": "spectrogram", "text": "caption",
    "midi": "midi_notes", "pianoroll": "piano_roll", "points": "point_cloud", "pointcloud": "point_cloud",
    "flow": "optical_flow", "pose_2d": "skeleton_2d", "pose_3d": "skeleton_3d", "qa": "question",
    "asr": "asr_transcript", "ocr": "ocr_transcript", "tokens": "vq_tokens",
}


def get_modality(name: str) -> ModalitySpec:
    """The spec registered under ``name`` (or a common alias); :class:`UnknownModalityError` otherwise."""
    key = ALIASES.get(name, name)
    try:
        return MODALITIES[key]
    except KeyError:
        known = ", ".join(sorted(MODALITIES))
        raise UnknownModalityError(f"unknown modality {name!r}; known modalities: {known}", source=name) from None


def list_modalities() -> list[ModalitySpec]:
    """Every registered spec, in registry order."""
    return list(MODALITIES.values())
