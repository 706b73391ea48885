"""Readers and writers, one module per medium. Every reader turns a decoding failure into
:class:`~xmodal.errors.CorruptFileError` naming the file; heavy decoders (av, pretty_midi) import lazily."""

from xmodal.data.io.audio import audio_duration, read_audio, resample, write_audio
from xmodal.data.io.geometry import read_mesh, read_point_cloud, write_mesh, write_point_cloud
from xmodal.data.io.graph import Graph, read_graph, write_graph
from xmodal.data.io.image import (
    image_suffixes,
    image_to_tensor,
    load_image_tensor,
    read_image,
    tensor_to_image,
    write_image,
)
from xmodal.data.io.midi import NOTE_FIELDS, read_midi_notes, read_piano_roll, write_midi
from xmodal.data.io.video import VideoClip, read_video, write_video

__all__ = [
    "Graph",
    "NOTE_FIELDS",
    "VideoClip",
    "audio_duration",
    "image_suffixes",
    "image_to_tensor",
    "load_image_tensor",
    "read_audio",
    "read_graph",
    "read_image",
    "read_mesh",
    "read_midi_notes",
    "read_piano_roll",
    "read_point_cloud",
    "read_video",
    "resample",
    "tensor_to_image",
    "write_audio",
    "write_graph",
    "write_image",
    "write_mesh",
    "write_midi",
    "write_point_cloud",
    "write_video",
]
