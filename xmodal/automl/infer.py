"""The modality of every column, inferred from content: each cell is a number, text, or a path; paths are
decoded on a bounded, evenly spread sample (:func:`xmodal.automl.sniff.sniff`); numbers and text are judged by
their statistics. Every column gets a one-line reason; unreadable and missing files are counted and named.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.automl.sniff import sniff
from xmodal.automl.sources import Table
from xmodal.errors import CorruptFileError, DataError
from xmodal.modalities import get_modality
from xmodal.transforms.inline import inline_bytes

SAMPLE = 32  # files decoded per column
MISSING_TOKENS = ("n/a", "na", "nan", "null", "none", "-", "?", "missing")  # placeholders for "no value"
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ID_NAME = re.compile(r"(^|[_\s-])(id|idx|index|key|uuid|stem|filename)$", re.IGNORECASE)
_MEDIA_SUFFIX = re.compile(r"\.(png|jpe?g|gif|bmp|webp|wav|flac|ogg|oga|mp3|m4a|mp4|avi|mkv|webm|mov|mid|midi|"
                           r"ply|off|obj|npz|npy|json|txt)$", re.IGNORECASE)


@dataclass
class ColumnType:
    """What a column is. ``role``: "input", "id" (identifies rows, not a feature) or "target"."""

    name: str
    role: str
    modality: str | None
    reason: str
    rows: int
    missing: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, error) among decoded ones
    sampled: int = 0

    @property
    def encoder(self) -> str | None:
        return encoder_family(self.modality) if self.modality else None


def encoder_family(modality: str) -> str:
    """The encoder family a modality's nature implies (:attr:`ModalitySpec.default_encoder`): e.g. cnn2d for
    images, an MLP for numbers, an embedding then an MLP for categories."""
    return get_modality(modality).default_encoder


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, (int, float)) or (isinstance(v, str) and bool(_NUMBER.match(v.strip())))


def _resolve(v: Any, root: Path) -> Path | None:
    if not isinstance(v, str) or "\n" in v or len(v) > 1024 or not v.strip():
        return None
    p = Path(v) if Path(v).is_absolute() else root / v
    try:
        return p if p.is_file() else None
    except OSError:
        return None


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices evenly spread over ``range(n)`` (all of them when ``n <= k``)."""
    return list(range(n)) if n <= k else sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _file_column(name: str, files: list[Path | None], cells: list[Any], n_missing: int, rows: int,
                 root: Path, sample: int) -> ColumnType:
    absent = [str(c) for c, f in zip(cells, files) if f is None]
    present = [f for f in files if f is not None]
    picked = [present[i] for i in _spread(len(present), sample)]
    votes: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    facts: dict[str, Counter] = {"mode": Counter(), "audio": Counter()}
    texts: list[str] = []
    example: dict[str, object] = {}
    bad: list[tuple[str, str]] = [(a, "FileNotFoundError: no such file") for a in absent]
    for f in picked:
        try:
            s = sniff(f)
        except (DataError, FileNotFoundError, OSError) as exc:
            bad.append((str(f.relative_to(root)) if f.is_relative_to(root) else str(f),
                        f"{type(exc).__name__}: {str(exc).split(': ', 1)[-1]}"))
            continue
        votes[s.modality] += 1
        example = example or {k: v for k, v in s.facts.items() if k not in facts}
        formats[s.format] += 1
        for k, seen in facts.items():
            if k in s.facts:
                seen[s.facts[k]] += 1
        if s.text is not None:
            texts.append(s.text)
    if not votes:
        first = "; ".join(f"{f} ({e})" for f, e in bad[:3])
        raise CorruptFileError(f"column {name!r}: none of the {len(picked) + len(absent)} files checked can be "
                               f"read: {first}", source=name)
    modality, count = votes.most_common(1)[0]
    detail = [f"{'/'.join(sorted(formats))} content in {count} of {len(picked)} decoded files"]
    if modality == "caption":
        modality, why = _text_spec(texts, name)
        detail.append(why)
    if len(votes) > 1:
        detail.append("others: " + ", ".join(f"{m} x{c}" for m, c in votes.items() if m != votes.most_common(1)[0][0]))
    if example:
        detail.append("first: " + ", ".join(f"{k} {v}" for k, v in list(example.items())[:3]))
    if facts["mode"]:
        modes = sorted(facts["mode"])
        detail.append(f"image modes {', '.join(modes)}" + (" (converted to RGB)" if modes != ["RGB"] else ""))
    if facts["audio"]:
        detail.append(f"{facts['audio'][True]} with an audio track, {facts['audio'][False]} without")
    if bad:
        detail.append(f"{len(bad)} of {len(picked) + len(absent)} checked unreadable ({len(absent)} missing): " +
                      ", ".join(f"{f} [{e}]" for f, e in bad[:3]) + (" ..." if len(bad) > 3 else ""))
    if n_missing:
        detail.append(f"{n_missing} empty cells")
    return ColumnType(name, "input", modality, f"file paths: {'; '.join(detail)}", rows, n_missing, bad,
                      len(picked))


_TEXT_NAMES = (("ocr", "ocr_transcript"), ("asr", "asr_transcript"), ("transcript", "asr_transcript"),
               ("answer", "answer"), ("question", "question"), ("dialog", "dialog"), ("caption", "caption"))


def _bytes_column(name: str, inline: list[tuple[bytes, str] | None], n_missing: int, rows: int,
                  sample: int) -> ColumnType:
    """A column of media bytes: the sampled cells are written to a temporary folder as ``row<i><suffix>`` and
    judged like files."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="xmodal-infer-") as d:
        files: list[Path | None] = []
        for i in _spread(len(inline), sample):
            cell = inline[i]
            if cell is None:
                continue
            content, suffix = cell
            f = Path(d) / f"row{i}{suffix}"
            f.write_bytes(content)
            files.append(f)
        found = _file_column(name, files, [str(f) for f in files], n_missing, rows, Path(d), sample)
    not_bytes = sum(i is None for i in inline)
    found.reason = found.reason.replace("file paths:", "media bytes in the cells:", 1) + (
        f"; {not_bytes} cells hold something else" if not_bytes else "")
    return found


def _text_spec(texts: list[str], column: str) -> tuple[str, str]:
    """(spec, why): question (mostly ends with '?'), dialog (several "speaker:" turns), else the kind the
    column's name says (answer, ASR or OCR transcript: the form of the words cannot tell them apart), else
    caption."""
    if texts and sum(t.rstrip().endswith("?") for t in texts) >= 0.8 * len(texts):
        return "question", "questions by their form"
    turns = [len(re.findall(r"(?m)^\s*[\w ]{1,20}:\s", t)) for t in texts]
    if texts and sum(k >= 2 for k in turns) >= 0.8 * len(texts):
        return "dialog", "dialog by its speaker turns"
    words = set(re.split(r"[^a-z]+", column.lower()))
    for hint, spec in _TEXT_NAMES:
        if hint in words:
            return spec, f"{spec} by the column's name"
    return "caption", "free text"


def _number_column(name: str, cells: list[Any], n_missing: int, rows: int, junk: list[Any]) -> ColumnType:
    strs = [str(c).strip() for c in cells]
    values = [float(c) for c in cells]
    ints = all(v.is_integer() for v in values)
    uniq = len(set(values))
    extra = f"; {len(junk)} non-numeric cells ({', '.join(repr(j) for j in junk[:3])}) treated as missing" \
        if junk else ""
    miss = f"; {n_missing} empty" if n_missing else ""
    if ints and uniq == len(values) and (_ID_NAME.search(name) or sorted(values) == [
            min(values) + i for i in range(len(values))]):
        why = "its name says so" if _ID_NAME.search(name) else "consecutive"
        return ColumnType(name, "id", None, f"numeric id: {uniq} distinct integers, one per row ({why}); "
                          "identifies rows, not a feature", rows, n_missing)
    if any(s.startswith("0") and len(s) > 1 and s.isdigit() for s in strs):
        return ColumnType(name, "input", "categorical", f"integer strings with leading zeros ({strs[0]!r}...): "
                          f"codes, {uniq} distinct" + miss + extra, rows, n_missing)
    if ints and uniq <= min(10, max(2, len(values) // 4)):
        return ColumnType(name, "input", "categorical", f"integers with only {uniq} distinct values over "
                          f"{len(values)} rows: category codes" + miss + extra, rows, n_missing)
    lo, hi = min(values), max(values)
    return ColumnType(name, "input", "numeric", f"numbers ({'integers' if ints else 'reals'}) in [{lo:g}, "
                      f"{hi:g}], {uniq} distinct" + miss + extra, rows, n_missing)


def _is_code(cell: str) -> bool:
    """A single token that is not a word: holds a digit or a symbol (``u2603``, ``A-17``, an emoji)."""
    token = cell.strip()
    return len(token.split()) == 1 and not token.isalpha()


def _text_column(name: str, cells: list[str], n_missing: int, rows: int) -> ColumnType:
    uniq = len(set(cells))
    words = sum(len(c.split()) for c in cells) / len(cells)
    miss = f"; {n_missing} empty" if n_missing else ""
    codes = all(_is_code(c) for c in cells)
    if words <= 1 and uniq > len(cells) // 2 and (_ID_NAME.search(name) or codes):
        what = "one per row" if uniq == len(cells) else f"{uniq} distinct over {len(cells)} rows"
        return ColumnType(name, "id", None, f"string id: single-token codes ({cells[0]!r}...), {what}; "
                          "identifies rows or groups, not a feature", rows, n_missing)
    if words <= 3 and uniq <= max(2, len(cells) // 2):
        kind = "codes" if codes else "short strings"
        return ColumnType(name, "input", "categorical", f"{kind} ({words:.1f} words) with {uniq} distinct "
                          f"values over {len(cells)} rows: categories" + miss, rows, n_missing)
    spec, why = _text_spec(cells, name)
    return ColumnType(name, "input", spec, f"inline text: {words:.1f} words on average, {uniq} distinct of "
                      f"{len(cells)}; {why}" + miss, rows, n_missing)


def infer_column(name: str, values: list[Any], root: Path, sample: int = SAMPLE) -> ColumnType:
    """The :class:`ColumnType` of one column; paths are resolved against ``root``; at most ``sample`` files
    (evenly spread over the column) are decoded, every path is checked for existence."""
    rows = len(values)
    cells = [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]
    n_missing = rows - len(cells)
    if not cells:
        raise DataError(f"column {name!r} is empty in all {rows} rows", source=name)
    inline = [inline_bytes(c) for c in cells]
    if sum(i is not None for i in inline) >= 0.5 * len(cells):
        return _bytes_column(name, inline, n_missing, rows, sample)
    files = [_resolve(c, root) for c in cells]
    n_files = sum(f is not None for f in files)
    looks_like_path = [f is not None or (isinstance(c, str) and bool(_MEDIA_SUFFIX.search(c.strip())))
                       for c, f in zip(cells, files)]
    if n_files and sum(looks_like_path) >= 0.5 * len(cells):
        keep = [(c, f) for c, f, lp in zip(cells, files, looks_like_path) if lp]
        return _file_column(name, [f for _, f in keep], [c for c, _ in keep], n_missing, rows, root, sample)
    if all(isinstance(c, (list, tuple)) for c in cells):
        return ColumnType(name, "input", "numeric", f"inline vectors of length {len(cells[0])}", rows, n_missing)
    numbers = [c for c in cells if _is_number(c)]
    placeholders = [c for c in cells if isinstance(c, str) and c.strip().lower() in MISSING_TOKENS]
    if numbers and len(numbers) >= 0.9 * (len(cells) - len(placeholders)):
        junk = [c for c in cells if not _is_number(c)]
        return _number_column(name, numbers, n_missing + len(junk), rows, junk)
    if sum(looks_like_path) >= 0.5 * len(cells):  # paths, none of which exists
        raise CorruptFileError(f"column {name!r}: none of its {len(cells)} file paths exists under {root} "
                               f"(first: {cells[0]!r})", source=name)
    return _text_column(name, [str(c) for c in cells], n_missing, rows)


def infer_columns(table: Table, target: str | None = None, sample: int = SAMPLE) -> dict[str, ColumnType]:
    """Every column's type; the target column is marked ``role="target"`` and not decoded as an input."""
    out = {}
    for name, values in table.columns.items():
        if name == target:
            n_missing = sum(v is None for v in values)
            out[name] = ColumnType(name, "target", None, "the target", len(values), n_missing)
        else:
            out[name] = infer_column(name, values, table.root, sample)
    return out
