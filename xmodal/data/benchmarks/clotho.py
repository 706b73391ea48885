"""Clotho captions CSVs (``clotho_captions_{development,validation,evaluation}.csv``): header
``file_name,caption_1,caption_2,caption_3,caption_4,caption_5``, one audio file a row."""

from __future__ import annotations

from dataclasses import dataclass, field

from xmodal.data.benchmarks._vl_files import PathLike, read_csv_rows, write_csv_rows
from xmodal.errors import DataError

CAPTIONS_PER_CLIP = 5
HEADER = ["file_name"] + [f"caption_{i}" for i in range(1, CAPTIONS_PER_CLIP + 1)]


@dataclass(frozen=True)
class ClothoClip:
    file_name: str
    captions: list[str] = field(default_factory=list)  # exactly five


def read_clotho(path: PathLike) -> list[ClothoClip]:
    out = []
    for n, r in read_csv_rows(path, HEADER):
        if not r["file_name"]:
            raise DataError(f"line {n}: empty file_name", source=path)
        out.append(ClothoClip(r["file_name"], [r[h] for h in HEADER[1:]]))
    return out


def write_clotho(path: PathLike, clips: list[ClothoClip]) -> None:
    for i, c in enumerate(clips):
        if len(c.captions) != CAPTIONS_PER_CLIP:
            raise DataError(f"clip #{i} ({c.file_name}): Clotho has exactly five captions per file, "
                            f"got {len(c.captions)}", source=path)
    write_csv_rows(path, HEADER, [[c.file_name, *c.captions] for c in clips])
