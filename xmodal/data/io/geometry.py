"""Point clouds and meshes: PLY (ascii, binary little/big endian), OFF and NPZ, read and written with numpy
only (no open3d/trimesh). Points are float32 (N, 3); faces are int64 (F, 3) triangles (polygons are split
into fans)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xmodal.data.io._common import PathLike, decoding, existing
from xmodal.errors import CorruptFileError, EmptyInputError, ShapeError

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def _triangulate(polys: list[list[int]]) -> np.ndarray:
    tris = [(p[0], p[i], p[i + 1]) for p in polys for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _fixed_list(body: bytes, pos: int, count: int, prop: tuple, order: str) -> tuple[np.ndarray, int] | None:
    """Fast path for a face element whose every list has the first row's length (all triangles, say):
    one structured read instead of a Python loop. ``None`` when lengths differ."""
    cdt, idt = np.dtype(order + prop[1]), np.dtype(order + prop[2])
    k = int(np.frombuffer(body, cdt, 1, pos)[0])
    dt = np.dtype([("n", cdt), ("idx", idt, (k,))])
    if pos + dt.itemsize * count > len(body):
        return None
    rec = np.frombuffer(body, dt, count, pos)
    if not np.all(rec["n"] == k):
        return None
    return rec["idx"].astype(np.int64), pos + dt.itemsize * count


def _ascii_fixed_list(tokens: list[bytes], pos: int, count: int) -> tuple[np.ndarray, int] | None:
    """ASCII twin of :func:`_fixed_list`: every row ``k i_1 .. i_k`` with the same ``k``."""
    k = int(tokens[pos])
    width = 1 + k
    if pos + count * width > len(tokens):
        return None
    arr = np.asarray(tokens[pos:pos + count * width], dtype=np.int64).reshape(count, width)
    if not np.all(arr[:, 0] == k):
        return None
    return arr[:, 1:], pos + count * width


def _read_ply(p: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float32, faces (F, 3) int64) of a PLY file."""
    with open(p, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise CorruptFileError("not a PLY file (first line is not 'ply')", source=p)
        fmt: str | None = None
        elements: list[Any] = []  # elements: [name, count, [(prop, dtype) | (prop, count_dtype, item_dtype)]]
        while True:
            line = fh.readline()
            if not line:
                raise CorruptFileError("PLY header has no end_header", source=p)
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append([words[1], int(words[2]), []])
            elif words[0] == "property":
                if words[1] == "list":
                    elements[-1][2].append((words[4], _PLY_TYPES[words[2]], _PLY_TYPES[words[3]]))
                else:
                    elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
            raise CorruptFileError(f"unsupported PLY format {fmt!r}", source=p)
        body = fh.read()
    order = "<" if fmt == "binary_little_endian" else ">"
    tokens: Any = body.split() if fmt == "ascii" else None  # list[bytes] for ascii
    pos = 0
    verts, faces = None, np.zeros((0, 3), np.int64)
    table: dict[str, Any]  # property name -> column (an array, or lists for list properties)
    lists: Any
    for name, count, props in elements:
        has_list = any(len(pr) == 3 for pr in props)
        if fmt == "ascii" and not has_list:  # one vectorised parse of count x props numbers
            n = len(props)
            arr = np.asarray(tokens[pos:pos + count * n], dtype=np.float64).reshape(count, n)
            pos += count * n
            table = {pr[0]: arr[:, i] for i, pr in enumerate(props)}
        elif (fmt == "ascii" and len(props) == 1 and count
              and (fixed := _ascii_fixed_list(tokens, pos, count)) is not None):
            lists, pos = fixed
            table = {props[0][0]: lists}
        elif fmt == "ascii":
            rows: list[list[Any]] = []
            for _ in range(count):
                row: list[Any] = []
                for pr in props:
                    if len(pr) == 3:
                        k = int(tokens[pos])
                        row.append([float(t) for t in tokens[pos + 1:pos + 1 + k]])
                        pos += 1 + k
                    else:
                        row.append(float(tokens[pos]))
                        pos += 1
                rows.append(row)
            table = {pr[0]: [r[i] for r in rows] for i, pr in enumerate(props)}
        elif not has_list:
            dt = np.dtype([(pr[0], order + pr[1]) for pr in props])
            arr = np.frombuffer(body, dtype=dt, count=count, offset=pos)
            pos += dt.itemsize * count
            table = {pr[0]: arr[pr[0]] for pr in props}
        elif len(props) == 1 and count and (fixed := _fixed_list(body, pos, count, props[0], order)) is not None:
            lists, pos = fixed
            table = {props[0][0]: lists}
        else:  # binary with mixed-length lists: walk row by row
            table = {pr[0]: [] for pr in props}
            for _ in range(count):
                for pr in props:
                    if len(pr) == 3:
                        cdt, idt = np.dtype(order + pr[1]), np.dtype(order + pr[2])
                        k = int(np.frombuffer(body, cdt, 1, pos)[0])
                        pos += cdt.itemsize
                        table[pr[0]].append(np.frombuffer(body, idt, k, pos).tolist())
                        pos += idt.itemsize * k
                    else:
                        dt = np.dtype(order + pr[1])
                        table[pr[0]].append(np.frombuffer(body, dt, 1, pos)[0])
                        pos += dt.itemsize
        if name == "vertex":
            verts = np.stack([np.asarray(table[c], np.float32) for c in ("x", "y", "z")], axis=1)
        elif name == "face":
            key = "vertex_indices" if "vertex_indices" in table else "vertex_index"
            lists = table[key]
            faces = (lists if isinstance(lists, np.ndarray) and lists.shape[1] == 3
                     else _triangulate([list(map(int, f)) for f in lists]))
    if verts is None:
        raise CorruptFileError("PLY has no vertex element", source=p)
    declared = ", ".join(f"{count} {name}" for name, count, _ in elements)
    left = len(tokens) - pos if tokens is not None else len(body) - pos
    if left > 0:  # e.g. more vertex lines than "element vertex N" declares
        unit = "values" if tokens is not None else "bytes"
        raise CorruptFileError(f"{left} {unit} follow the declared elements ({declared})", source=p)
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise CorruptFileError(
            f"a face refers to vertex {int(faces.max() if faces.max() >= len(verts) else faces.min())} but "
            f"there are {len(verts)} vertices ({declared})", source=p)
    return verts, faces


def _read_off(p: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = [ln.split("#", 1)[0].strip() for ln in p.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].startswith("OFF"):
        raise CorruptFileError("not an OFF file (first line is not 'OFF')", source=p)
    head = lines[0][3:].split() or lines.pop(1).split()  # counts may share the OFF line (ModelNet does)
    nv, nf = int(head[0]), int(head[1])
    body = lines[1:]
    verts = np.asarray([body[i].split()[:3] for i in range(nv)], dtype=np.float32).reshape(-1, 3)
    polys = []
    for ln in body[nv:nv + nf]:
        vals = [int(v) for v in ln.split()]
        polys.append(vals[1:1 + vals[0]])
    return verts, _triangulate(polys)


def read_mesh(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices float32 ``(V, 3)`` and triangle faces int64 ``(F, 3)`` from .ply, .off or .npz
    (keys ``vertices``/``points`` and ``faces``)."""
    p = existing(path)
    suffix = p.suffix.lower()
    with decoding(p, "mesh"):
        if suffix == ".ply":
            verts, faces = _read_ply(p)
        elif suffix == ".off":
            verts, faces = _read_off(p)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = "vertices" if "vertices" in z else "points"
                verts = z[key].astype(np.float32)
                faces = z["faces"].astype(np.int64) if "faces" in z else np.zeros((0, 3), np.int64)
        else:
            raise CorruptFileError(f"unknown point-cloud/mesh suffix {suffix!r} (.ply, .off, .npz)", source=p)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ShapeError(f"points have shape {verts.shape}, expected (N, 3)", source=p)
    if len(verts) == 0:
        raise EmptyInputError("no points", source=p)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(verts)):
        raise CorruptFileError(f"face index out of range [0, {len(verts)})", source=p)
    return verts, faces


def read_point_cloud(path: PathLike) -> np.ndarray:
    """float32 ``(N, 3)`` points from .ply, .off or .npz (faces, if any, are ignored)."""
    return read_mesh(path)[0]


def write_mesh(path: PathLike, vertices: np.ndarray, faces: np.ndarray | None = None,
               binary: bool = True) -> None:
    """Write vertices ``(N, 3)`` and optional triangles ``(F, 3)``; the format follows the suffix."""
    p = Path(path)
    v = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    f = np.zeros((0, 3), np.int64) if faces is None else np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        np.savez(p, vertices=v, faces=f)
    elif suffix == ".off":
        lines = ["OFF", f"{len(v)} {len(f)} 0"]
        lines += [" ".join(repr(float(c)) for c in row) for row in v]
        lines += ["3 " + " ".join(str(int(i)) for i in row) for row in f]
        p.write_text("\n".join(lines) + "\n")
    elif suffix == ".ply":
        fmt = "binary_little_endian" if binary else "ascii"
        header = ["ply", f"format {fmt} 1.0", f"element vertex {len(v)}",
                  "property float x", "property float y", "property float z"]
        if len(f):
            header += [f"element face {len(f)}", "property list uchar int vertex_indices"]
        header.append("end_header")
        with open(p, "wb") as fh:
            fh.write(("\n".join(header) + "\n").encode("ascii"))
            if binary:
                fh.write(v.astype("<f4").tobytes())
                if len(f):
                    rec = np.zeros(len(f), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
                    rec["n"], rec["idx"] = 3, f
                    fh.write(rec.tobytes())
            else:
                fh.write("".join(f"{a!r} {b!r} {c!r}\n" for a, b, c in v.tolist()).encode("ascii"))
                fh.write("".join(f"3 {a} {b} {c}\n" for a, b, c in f.tolist()).encode("ascii"))
    else:
        raise ValueError(f"{p}: unknown suffix {suffix!r} (.ply, .off, .npz)")


def write_point_cloud(path: PathLike, points: np.ndarray, binary: bool = True) -> None:
    """Write ``(N, 3)`` points as .ply (binary little endian by default), .off or .npz."""
    write_mesh(path, points, None, binary)
