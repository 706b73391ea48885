"""METEOR 1.5 through one long-lived ``java -jar meteor-1.5.jar - - -stdio -l en -norm`` process.

Same protocol as pycocoevalcap's ``meteor.py``: one ``SCORE ||| ref ||| ... ||| hyp`` line per image returns its
statistics, and one ``EVAL ||| stats ||| ...`` line returns the per-image scores followed by the corpus score,
which the jar computes from the pooled statistics (it is not the mean of the image scores). The JVM and the
paraphrase table load once per process instead of once per call, and the SCORE lines are pipelined.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import threading
from pathlib import Path

from xmodal.errors import MissingDependencyError

_LOCK = threading.Lock()
_PROCESS: "MeteorProcess | None" = None


def find_meteor_jar(path: str | os.PathLike | None = None) -> Path:
    """The METEOR 1.5 jar: ``path``, else ``$XMODAL_METEOR_JAR``, else the one inside pycocoevalcap."""
    candidates = [path, os.environ.get("XMODAL_METEOR_JAR")]
    try:
        import importlib.util

        spec = importlib.util.find_spec("pycocoevalcap")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(list(spec.submodule_search_locations)[0]) / "meteor" / "meteor-1.5.jar")
    except ImportError:
        pass
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise MissingDependencyError(
        "METEOR needs meteor-1.5.jar (with data/paraphrase-en.gz beside it): pass meteor_jar=, set "
        "XMODAL_METEOR_JAR, or `pip install pycocoevalcap`, which bundles both.")


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise MissingDependencyError("METEOR needs a Java runtime (`apt-get install default-jre-headless`).")
    return java


class MeteorProcess:
    """A running METEOR jar. Thread-safe; reuse it, since start-up (about 2 s) dominates small evaluations."""

    def __init__(self, jar: str | os.PathLike | None = None) -> None:
        jar = find_meteor_jar(jar)
        self._proc = subprocess.Popen(
            [_java(), "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._lock = threading.Lock()

    def score(self, cands: list[str], refs: list[list[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-image scores of candidate strings against their references."""
        lines = []
        for c, rs in zip(cands, refs):
            # Same cleaning as the reference: '|||' separates fields, so it is removed from the hypothesis.
            hyp = c.replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(rs), hyp)).replace("\n", " "))
        with self._lock:
            proc = self._proc
            if proc.poll() is not None:
                raise MissingDependencyError(f"the METEOR process exited with code {proc.returncode}")
            # Write every SCORE line from a thread while reading the answers, so neither pipe fills up.
            writer = threading.Thread(target=self._write, args=(lines,))
            writer.start()
            stats = [proc.stdout.readline().decode().strip() for _ in lines]
            writer.join()
            proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
            proc.stdin.flush()
            per = [float(proc.stdout.readline().strip()) for _ in lines]
            total = float(proc.stdout.readline().strip())
        return total, per

    def _write(self, lines: list[str]) -> None:
        for line in lines:
            self._proc.stdin.write((line + "\n").encode())
        self._proc.stdin.flush()

    def close(self) -> None:
        """Stop the Java process."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.kill()
            self._proc.wait()


def meteor(cands: list[str], refs: list[list[str]], jar: str | os.PathLike | None = None
           ) -> tuple[float, list[float]]:
    """METEOR 1.5 as pycocoevalcap computes it, using a shared process started on first use."""
    global _PROCESS
    if not cands:
        return 0.0, []
    with _LOCK:
        if _PROCESS is None or (jar is not None and Path(jar) != find_meteor_jar(None)):
            _PROCESS = MeteorProcess(jar)
            atexit.register(_PROCESS.close)
        proc = _PROCESS
    return proc.score(cands, refs)
