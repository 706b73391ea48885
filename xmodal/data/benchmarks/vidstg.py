"""VidSTG (Guo-Zhang/VidSTG-Dataset) annotations with their VidOR trajectories, as TubeDETR's
``preproc_vidstg.py`` reads them.

``{train,val,test}_annotations.json`` is a list of ``{vid, frame_count, fps, width, height, used_segment:
{begin_fid, end_fid}, temporal_gt: {begin_fid, end_fid}, subject/objects, questions: [...], captions: [...]}``
(questions are the interrogative sentences, captions the declarative ones, each ``{target_id, type,
description}``). The boxes come from VidOR's per-video JSON: ``trajectories[frame]`` is a list of ``{tid, bbox:
{xmin, ymin, xmax, ymax}, generated, tracker}``. Spans are frame indices with the end excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xmodal.data.benchmarks._vl_files import PathLike, dump_json, existing, get, load_json
from xmodal.errors import DataError


@dataclass(frozen=True)
class VidSTGSentence:
    target_id: int
    type: str  # the target's category, e.g. "adult"
    description: str


@dataclass(frozen=True)
class VidSTGVideo:
    vid: str
    frame_count: int
    fps: float
    width: int
    height: int
    used_segment: tuple[int, int]  # [begin_fid, end_fid)
    temporal_gt: tuple[int, int]  # [begin_fid, end_fid)
    objects: dict[int, str] = field(default_factory=dict)  # tid -> category
    questions: list[VidSTGSentence] = field(default_factory=list)  # interrogative
    captions: list[VidSTGSentence] = field(default_factory=list)  # declarative


@dataclass(frozen=True)
class VidORVideo:
    video_id: str
    video_path: str  # e.g. "0000/2401075277.mp4"
    frame_count: int
    fps: float
    width: int
    height: int
    objects: dict[int, str] = field(default_factory=dict)
    boxes: dict[int, dict[int, tuple[float, float, float, float]]] = field(default_factory=dict)  # tid -> frame -> xyxy


@dataclass(frozen=True)
class VidSTGQuery:
    """One sentence as TubeDETR's preprocessing flattens it: ``index`` counts the sentences of the file,
    each video's questions first and then its captions."""

    index: int
    video: VidSTGVideo
    sentence: VidSTGSentence
    qtype: str  # "interrogative" or "declarative"


def _span(rec: dict, key: str, where: str, p: Path) -> tuple[int, int]:
    span = get(rec, key, dict, where, p)
    return get(span, "begin_fid", int, f"{where} {key}", p), get(span, "end_fid", int, f"{where} {key}", p)


def _sentences(rec: dict, key: str, where: str, p: Path) -> list[VidSTGSentence]:
    out = []
    for j, s in enumerate(get(rec, key, list, where, p)):
        w = f"{where} {key}[{j}]"
        out.append(VidSTGSentence(get(s, "target_id", int, w, p), get(s, "type", str, w, p),
                                  get(s, "description", str, w, p)))
    return out


def _objects(rec: dict, where: str, p: Path) -> dict[int, str]:
    objs = rec.get("subject/objects", [])
    if not isinstance(objs, list):
        raise DataError(f"{where}: 'subject/objects' must be a list", source=p)
    return {get(o, "tid", int, where, p): get(o, "category", str, where, p) for o in objs}


def read_vidstg(path: PathLike) -> list[VidSTGVideo]:
    """The videos of a VidSTG ``*_annotations.json``, in file order."""
    p = existing(path)
    data = load_json(p)
    if not isinstance(data, list):
        raise DataError("expected a list of video annotations", source=p)
    out = []
    for i, rec in enumerate(data):
        w = f"record #{i}"
        out.append(VidSTGVideo(get(rec, "vid", str, w, p), get(rec, "frame_count", int, w, p),
                               float(get(rec, "fps", float, w, p)), get(rec, "width", int, w, p),
                               get(rec, "height", int, w, p), _span(rec, "used_segment", w, p),
                               _span(rec, "temporal_gt", w, p), _objects(rec, w, p),
                               _sentences(rec, "questions", w, p), _sentences(rec, "captions", w, p)))
    return out


def vidstg_queries(videos: list[VidSTGVideo]) -> list[VidSTGQuery]:
    """The sentences in TubeDETR's order and numbering (its ``video_id``)."""
    out: list[VidSTGQuery] = []
    for v in videos:
        for s in v.questions:
            out.append(VidSTGQuery(len(out), v, s, "interrogative"))
        for s in v.captions:
            out.append(VidSTGQuery(len(out), v, s, "declarative"))
    return out


def read_vidor(path: PathLike) -> VidORVideo:
    """One VidOR annotation file: the boxes of every trajectory, per frame index."""
    p = existing(path)
    rec = load_json(p)
    w = "top level"
    objects = _objects(rec, w, p)
    boxes: dict[int, dict[int, tuple[float, float, float, float]]] = {tid: {} for tid in objects}
    for frame, entries in enumerate(get(rec, "trajectories", list, w, p)):
        if not isinstance(entries, list):
            raise DataError(f"trajectories[{frame}] must be a list", source=p)
        for e in entries:
            wf = f"trajectories[{frame}]"
            tid = get(e, "tid", int, wf, p)
            b = get(e, "bbox", dict, wf, p)
            box = tuple(float(get(b, k, float, f"{wf} bbox", p)) for k in ("xmin", "ymin", "xmax", "ymax"))
            if tid not in boxes:
                raise DataError(f"{wf}: tid {tid} is not among subject/objects", source=p)
            boxes[tid][frame] = box  # type: ignore[assignment]
    return VidORVideo(get(rec, "video_id", str, w, p), get(rec, "video_path", str, w, p),
                      get(rec, "frame_count", int, w, p), float(get(rec, "fps", float, w, p)),
                      get(rec, "width", int, w, p), get(rec, "height", int, w, p), objects, boxes)


def read_vidor_folder(folder: PathLike) -> dict[str, VidORVideo]:
    """Every VidOR annotation JSON under ``folder`` (``<folder>/<group>/<video_id>.json``), by video id."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of VidOR annotations")
    out = {}
    for f in sorted(root.rglob("*.json")):
        video = read_vidor(f)
        out[video.video_id] = video
    return out


def write_vidstg(path: PathLike, videos: list[VidSTGVideo]) -> None:
    def sentences(items: list[VidSTGSentence]) -> list[dict]:
        return [{"target_id": s.target_id, "type": s.type, "description": s.description} for s in items]

    dump_json(path, [{
        "vid": v.vid, "frame_count": v.frame_count, "fps": v.fps, "width": v.width, "height": v.height,
        "used_segment": {"begin_fid": v.used_segment[0], "end_fid": v.used_segment[1]},
        "temporal_gt": {"begin_fid": v.temporal_gt[0], "end_fid": v.temporal_gt[1]},
        "subject/objects": [{"tid": t, "category": c} for t, c in v.objects.items()],
        "questions": sentences(v.questions), "captions": sentences(v.captions),
    } for v in videos])


def write_vidor(folder: PathLike, video: VidORVideo) -> Path:
    """``<folder>/<video_path without .mp4>.json`` in VidOR's layout; returns the path written."""
    frames: list[list[dict]] = [[] for _ in range(video.frame_count)]
    for tid, per_frame in video.boxes.items():
        for frame, (x1, y1, x2, y2) in sorted(per_frame.items()):
            if not 0 <= frame < video.frame_count:
                raise DataError(f"tid {tid}: frame {frame} outside the video's {video.frame_count} frames",
                                source=video.video_id)
            frames[frame].append({"tid": tid, "bbox": {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2},
                                  "generated": 0, "tracker": "none"})
    out = Path(folder) / (str(Path(video.video_path).with_suffix("")) + ".json")
    dump_json(out, {
        "version": "VERSION 1.0", "video_id": video.video_id, "video_hash": "", "video_path": video.video_path,
        "frame_count": video.frame_count, "fps": video.fps, "width": video.width, "height": video.height,
        "subject/objects": [{"tid": t, "category": c} for t, c in video.objects.items()],
        "trajectories": frames, "relation_instances": [],
    })
    return out
