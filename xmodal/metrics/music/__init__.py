"""Music metrics: beat coverage/hit (D2M-GAN, CDCD) and beat F-measure (mir_eval), MusDr's pitch-class
entropy, grooving similarity, chord irregularity and structureness indicator, and a genre-accuracy protocol.

librosa (``xmodal[music]``) is imported only inside the functions that need it.
"""

from xmodal.metrics.music.beats import (
    BeatScores,
    beat_f_measure,
    beat_scores,
    beat_times,
    coverage_hit,
    onset_bins,
)
from xmodal.metrics.music.genre import GenreAccuracy, GenreClassifier, clip_features, genre_accuracy
from xmodal.metrics.music.structure import (
    fitness_scape_plot,
    scape_plot_from_audio,
    self_similarity,
    structure_indicator,
    structureness,
    structureness_many,
)
from xmodal.metrics.music.symbolic import (
    chord_irregularity,
    chord_sequence,
    grooving_similarity,
    midi_to_events,
    pitch_class_entropy,
    to_events,
)

__all__ = [
    "BeatScores",
    "beat_f_measure",
    "beat_scores",
    "beat_times",
    "coverage_hit",
    "onset_bins",
    "GenreAccuracy",
    "GenreClassifier",
    "clip_features",
    "genre_accuracy",
    "fitness_scape_plot",
    "scape_plot_from_audio",
    "self_similarity",
    "structure_indicator",
    "structureness",
    "structureness_many",
    "chord_irregularity",
    "chord_sequence",
    "grooving_similarity",
    "midi_to_events",
    "pitch_class_entropy",
    "to_events",
]
