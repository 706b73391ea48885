"""HC-STVG annotation JSON (tzhhhh123/HC-STVG), v1 and v2, as TubeDETR's ``preproc_hcstvg*.py`` reads it.

``{"<vid>.mp4": {img_num, st_frame, st_time, ed_time, bbox: [[x, y, w, h] per tube frame], ...}}`` with
``width``/``height``/``caption`` in v1 and ``img_size`` = [height, width] / ``English`` in v2. The tube starts at
``st_frame`` and covers ``len(bbox)`` frames (end excluded); a clip is 20 s, so its frame rate is img_num / 20.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xmodal.data.benchmarks._vl_files import PathLike, dump_json, existing, get, load_json, number_list
from xmodal.errors import DataError

CLIP_SECONDS = 20  # every HC-STVG clip; TubeDETR derives the frame rate as img_num / 20


@dataclass(frozen=True)
class HCSTVGVideo:
    key: str  # the annotation key, verbatim, e.g. "50_TM5MPJIq1Is.mp4"
    img_num: int
    width: int
    height: int
    st_frame: int
    st_time: float
    ed_time: float
    caption: str
    bbox: list[list[float]] = field(default_factory=list)  # [x, y, w, h] for frames st_frame, st_frame + 1, ...

    @property
    def tube_end_frame(self) -> int:
        """First frame after the tube (excluded), as preproc_hcstvg.py computes it."""
        return self.st_frame + len(self.bbox)


def read_hc_stvg(path: PathLike) -> list[HCSTVGVideo]:
    """Every clip of an HC-STVG v1 (train.json/test.json) or v2 (trainv2.json/valv2.json) file, in file order;
    the version is recognised per record by its keys."""
    p = existing(path)
    data = load_json(p)
    if not isinstance(data, dict):
        raise DataError("expected an object keyed by video file name", source=p)
    out = []
    for key, rec in data.items():
        if isinstance(rec, dict) and "img_size" in rec:
            h, w = number_list(get(rec, "img_size", list, key, p), 2, "img_size", key, p)
            width, height, caption = int(w), int(h), get(rec, "English", str, key, p)
        else:
            width, height = get(rec, "width", int, key, p), get(rec, "height", int, key, p)
            caption = get(rec, "caption", str, key, p)
        boxes = [number_list(b, 4, "a box", f"{key} bbox[{j}]", p)
                 for j, b in enumerate(get(rec, "bbox", list, key, p))]
        video = HCSTVGVideo(key, get(rec, "img_num", int, key, p), width, height, get(rec, "st_frame", int, key, p),
                            float(get(rec, "st_time", float, key, p)), float(get(rec, "ed_time", float, key, p)),
                            caption, boxes)
        if not boxes or video.st_frame < 0 or video.tube_end_frame > video.img_num:
            raise DataError(f"{key}: the tube [{video.st_frame}, {video.tube_end_frame}) must be non-empty and "
                            f"inside the clip's {video.img_num} frames", source=p)
        out.append(video)
    return out


def write_hc_stvg(path: PathLike, videos: list[HCSTVGVideo], version: int = 1) -> None:
    """The annotation JSON of HC-STVG ``version`` 1 or 2, keyed by ``key``, in list order."""
    if version not in (1, 2):
        raise ValueError(f"HC-STVG version must be 1 or 2, got {version}")
    data = {}
    for v in videos:
        rec: dict = {"img_num": v.img_num}
        if version == 1:
            rec.update(width=v.width, height=v.height)
        else:
            rec["img_size"] = [v.height, v.width]
        rec.update(st_frame=v.st_frame, st_time=v.st_time, ed_time=v.ed_time, bbox=[list(b) for b in v.bbox])
        rec["caption" if version == 1 else "English"] = v.caption
        data[v.key] = rec
    dump_json(path, data)


def video_paths(video_dir: PathLike) -> dict[str, Path]:
    """``{video id: path}`` of the clips under ``video_dir``, one folder level down (``video/<folder>/<id>.mp4``),
    as TubeDETR's ``preproc_hcstvg*.py`` maps them; the id is the file name without its 4-character extension,
    which is the annotation key without ``.mp4``. Two clips with one id are an error (the preprocessing would
    keep whichever it lists last)."""
    root = Path(video_dir)
    if not root.is_dir():
        raise DataError("no such folder of HC-STVG clips", source=root)
    out: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.iterdir()):
            vid = f.name[:-4]
            if vid in out:
                raise DataError(f"two clips named {vid}: {out[vid]} and {f}", source=root)
            out[vid] = f
    return out
