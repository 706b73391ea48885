"""MSR-VTT in the layout CLIP4Clip and most video-text retrieval code read: ``MSRVTT_data.json``
(``{"videos": [{video_id, id, split, category, url, "start time", "end time"}], "sentences": [{caption,
video_id, sen_id}]}``), the 9k training list ``MSRVTT_train.9k.csv`` (header ``video_id``) and the 1k-A test
``MSRVTT_JSFUSION_test.csv`` (header ``key,vid_key,video_id,sentence``, e.g. ``ret0,msr9770,video9770,...``)."""

from __future__ import annotations

from dataclasses import dataclass

from xmodal.data.benchmarks._vl_files import (
    PathLike,
    dump_json,
    existing,
    get,
    load_json,
    read_csv_rows,
    write_csv_rows,
)
from xmodal.errors import DataError

JSFUSION_HEADER = ["key", "vid_key", "video_id", "sentence"]
TRAIN_LIST_HEADER = ["video_id"]


@dataclass(frozen=True)
class MsrvttVideo:
    video_id: str  # "video0"
    id: int
    split: str  # train, validate or test
    category: int = 0
    url: str = ""
    start_time: float = 0.0
    end_time: float = 0.0


@dataclass(frozen=True)
class MsrvttSentence:
    sen_id: int
    video_id: str
    caption: str


@dataclass(frozen=True)
class MsrvttData:
    videos: list[MsrvttVideo]
    sentences: list[MsrvttSentence]


@dataclass(frozen=True)
class Msrvtt1kAPair:
    """One row of the 1k-A test: the query ``sentence`` and its video."""

    key: str  # "ret0"
    vid_key: str  # "msr9770"
    video_id: str  # "video9770"
    sentence: str


def read_msrvtt_data(path: PathLike) -> MsrvttData:
    p = existing(path)
    data = load_json(p)
    videos = []
    for i, v in enumerate(get(data, "videos", list, "top level", p)):
        w = f"videos[{i}]"
        videos.append(MsrvttVideo(get(v, "video_id", str, w, p), get(v, "id", int, w, p), get(v, "split", str, w, p),
                                  int(v.get("category", 0)), str(v.get("url", "")),
                                  float(v.get("start time", 0.0)), float(v.get("end time", 0.0))))
    sentences = [MsrvttSentence(get(s, "sen_id", int, f"sentences[{i}]", p),
                                get(s, "video_id", str, f"sentences[{i}]", p),
                                get(s, "caption", str, f"sentences[{i}]", p))
                 for i, s in enumerate(get(data, "sentences", list, "top level", p))]
    known = {v.video_id for v in videos}
    for i, s in enumerate(sentences):
        if s.video_id not in known:
            raise DataError(f"sentences[{i}]: video_id {s.video_id!r} is not among the videos", source=p)
    return MsrvttData(videos, sentences)


def write_msrvtt_data(path: PathLike, data: MsrvttData) -> None:
    dump_json(path, {
        "info": {"description": "written by xmodal in the MSR-VTT layout"},
        "videos": [{"category": v.category, "url": v.url, "video_id": v.video_id, "start time": v.start_time,
                    "end time": v.end_time, "split": v.split, "id": v.id} for v in data.videos],
        "sentences": [{"caption": s.caption, "video_id": s.video_id, "sen_id": s.sen_id} for s in data.sentences],
    })


def read_msrvtt_1ka(path: PathLike) -> list[Msrvtt1kAPair]:
    """The rows of ``MSRVTT_JSFUSION_test.csv`` in order (query i's video is gallery item i)."""
    return [Msrvtt1kAPair(r["key"], r["vid_key"], r["video_id"], r["sentence"])
            for _, r in read_csv_rows(path, JSFUSION_HEADER)]


def write_msrvtt_1ka(path: PathLike, pairs: list[Msrvtt1kAPair]) -> None:
    write_csv_rows(path, JSFUSION_HEADER, [[q.key, q.vid_key, q.video_id, q.sentence] for q in pairs])


def read_msrvtt_train_list(path: PathLike) -> list[str]:
    return [r["video_id"] for _, r in read_csv_rows(path, TRAIN_LIST_HEADER)]


def write_msrvtt_train_list(path: PathLike, video_ids: list[str]) -> None:
    write_csv_rows(path, TRAIN_LIST_HEADER, [[v] for v in video_ids])
