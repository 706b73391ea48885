"""SPICE (Anderson et al. 2016) through the SPICE 1.0 jar, as pycocoevalcap's ``spice.py`` runs it.

The jar needs Stanford CoreNLP 3.6.0 (``stanford-corenlp-3.6.0.jar`` and ``stanford-corenlp-3.6.0-models.jar``
in its ``lib/`` folder), which pycocoevalcap downloads at run time and which cannot be fetched here. Point
xmodal at a complete SPICE folder with ``spice_jar=`` or ``$XMODAL_SPICE_JAR``; otherwise a
:class:`~xmodal.errors.MissingDependencyError` names the missing files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from xmodal.errors import MissingDependencyError

CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def find_spice_jar(path: str | os.PathLike | None = None) -> Path:
    """The SPICE jar with its CoreNLP libraries, or an error that lists what is missing."""
    jar = path or os.environ.get("XMODAL_SPICE_JAR")
    if not jar:
        raise MissingDependencyError(
            "SPICE needs spice-1.0.jar plus Stanford CoreNLP 3.6.0 (" + ", ".join(CORENLP_JARS) + " in the "
            "jar's lib/ folder); pass spice_jar= or set XMODAL_SPICE_JAR to the jar's path.")
    jar = Path(jar)
    if not jar.is_file():
        raise MissingDependencyError(f"{jar}: SPICE jar not found (expected spice-1.0.jar)")
    missing = [name for name in CORENLP_JARS if not (jar.parent / "lib" / name).is_file()]
    if missing:
        raise MissingDependencyError(
            f"{jar.parent / 'lib'}: SPICE needs Stanford CoreNLP 3.6.0 here; missing " + ", ".join(missing))
    if shutil.which("java") is None:
        raise MissingDependencyError("SPICE needs a Java runtime (`apt-get install default-jre-headless`).")
    return jar


def spice(cands: list[str], refs: list[list[str]], ids: list[object],
          jar: str | os.PathLike | None = None) -> tuple[float, list[float]]:
    """Mean SPICE F-score and per-image F-scores (NaN where the jar gives none), like pycocoevalcap."""
    jar = find_spice_jar(jar)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        inp.write_text(json.dumps([{"image_id": i, "test": c, "refs": r} for i, c, r in zip(ids, cands, refs)]))
        # --add-opens: the jar's serialisation library fails on Java >= 16 without it.
        cmd = ["java", "-Xmx8G", "--add-opens", "java.base/java.lang=ALL-UNNAMED", "-jar", str(jar), str(inp),
               "-out", str(out), "-subset", "-silent"]
        subprocess.run(cmd, cwd=jar.parent, check=True)
        results = {str(item["image_id"]): item["scores"]["All"]["f"] for item in json.loads(out.read_text())}

    def as_float(v: object) -> float:
        try:
            return float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return math.nan

    per = [as_float(results.get(str(i))) for i in ids]
    import numpy as np

    return float(np.mean(per)), per
