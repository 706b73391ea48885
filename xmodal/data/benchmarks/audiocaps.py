"""AudioCaps CSVs (cdjkim/audiocaps ``dataset/{train,val,test}.csv``): header
``audiocap_id,youtube_id,start_time,caption``, one caption a row; val and test clips have five rows each."""

from __future__ import annotations

from dataclasses import dataclass

from xmodal.data.benchmarks._vl_files import PathLike, read_csv_rows, write_csv_rows
from xmodal.errors import DataError

HEADER = ["audiocap_id", "youtube_id", "start_time", "caption"]


@dataclass(frozen=True)
class AudioCapsCaption:
    audiocap_id: int
    youtube_id: str
    start_time: int  # seconds into the YouTube video where the 10-s clip starts
    caption: str

    @property
    def clip(self) -> tuple[str, int]:
        return (self.youtube_id, self.start_time)


def _int(text: str, what: str, lineno: int, path: PathLike) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"line {lineno}: {what} {text!r} is not an integer", source=path) from None


def read_audiocaps(path: PathLike) -> list[AudioCapsCaption]:
    return [AudioCapsCaption(_int(r["audiocap_id"], "audiocap_id", n, path), r["youtube_id"],
                             _int(r["start_time"], "start_time", n, path), r["caption"])
            for n, r in read_csv_rows(path, HEADER)]


def write_audiocaps(path: PathLike, captions: list[AudioCapsCaption]) -> None:
    write_csv_rows(path, HEADER, [[c.audiocap_id, c.youtube_id, c.start_time, c.caption] for c in captions])


def audiocaps_clips(captions: list[AudioCapsCaption]) -> list[tuple[tuple[str, int], list[AudioCapsCaption]]]:
    """Captions grouped by clip (youtube_id, start_time), clips in first-seen order: the retrieval gallery."""
    groups: dict[tuple[str, int], list[AudioCapsCaption]] = {}
    for c in captions:
        groups.setdefault(c.clip, []).append(c)
    return list(groups.items())
