"""METEOR 1.5 through one long-lived ``java -jar meteor-1.5.jar - - -stdio -l en -norm`` process.

Same protocol as pycocoevalcap's ``meteor.py``: one ``SCORE ||| ref ||| ... ||| hyp`` line per image returns its
statistics, and one ``EVAL ||| stats ||| ...`` line returns the per-image scores followed by the corpus score,
which the jar computes from the pooled statistics (it is not the mean of the image scores). The JVM and the
paraphrase table load once per process instead of once per call, and the SCORE lines are pipelined.

Every line terminator that Java's line readers honour (``\n``, ``\r``, U+0085, U+2028, U+2029) becomes a space
before a line is written, so a caption cannot split its line and desynchronise the protocol. When the JVM
fails, the error carries its stderr and the next call starts a fresh process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import zipfile
from pathlib import Path

from xmodal.errors import CorruptFileError, ExternalToolError, MissingDependencyError, MissingFileError

_LOCK = threading.Lock()
_PROCESS: MeteorProcess | None = None
# Java's BufferedReader ends a line at \n or \r, its Scanner also at U+0085, U+2028 and U+2029.
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\u0085\u2028\u2029"})
_STDERR_TAIL = 2000  # characters of the JVM's stderr quoted in an error


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
            if not zipfile.is_zipfile(c):
                raise CorruptFileError("is not a jar (zip) file; expected meteor-1.5.jar", source=str(c))
            return Path(c)
        if c is path and c is not None:  # an explicit jar that is absent is an error, not a fallback
            raise MissingFileError("METEOR jar not found", source=str(c))
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
        self.jar = jar
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: an unread pipe could fill and block
        self._proc = subprocess.Popen(
            [_java(), "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._lock = threading.Lock()
        self.failed = False

    @property
    def alive(self) -> bool:
        return not self.failed and self._proc.poll() is None

    def _failure(self, what: str) -> ExternalToolError:
        """Stop the process and describe what went wrong, with the tail of the JVM's stderr."""
        self.failed = True
        self.close()
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace")[-_STDERR_TAIL:].strip()
        code = self._proc.returncode
        return ExternalToolError(
            f"METEOR ({self.jar}) failed: {what}; exit code {code}"
            + (f"; its stderr:\n{tail}" if tail else "; it wrote nothing to stderr")
        )

    def score(self, cands: list[str], refs: list[list[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-image scores of candidate strings against their references."""
        lines = []
        for c, rs in zip(cands, refs):
            # Same cleaning as the reference: '|||' separates fields, so it is removed from the hypothesis.
            hyp = c.replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(rs), hyp)).translate(_LINE_BREAKS))
        with self._lock:
            if not self.alive:
                raise self._failure("the process is not running")
            try:
                return self._exchange(lines)
            except (OSError, ValueError) as exc:  # a broken pipe, or an answer that is not a number
                raise self._failure(f"{type(exc).__name__}: {exc}") from exc

    def _exchange(self, lines: list[str]) -> tuple[float, list[float]]:
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        # Write every SCORE line from a thread while reading the answers, so neither pipe fills up.
        errors: list[BaseException] = []
        writer = threading.Thread(target=self._write, args=(lines, errors))
        writer.start()
        stats = [proc.stdout.readline().decode().strip() for _ in lines]
        writer.join()
        if errors:
            raise errors[0]
        if any(not s for s in stats):
            raise ValueError("the process stopped answering")
        proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        proc.stdin.flush()
        per = [float(proc.stdout.readline().strip()) for _ in lines]
        total = float(proc.stdout.readline().strip())
        return total, per

    def _write(self, lines: list[str], errors: list[BaseException]) -> None:
        assert self._proc.stdin is not None
        try:
            for line in lines:
                self._proc.stdin.write((line + "\n").encode())
            self._proc.stdin.flush()
        except OSError as exc:  # the JVM died: the reader sees end of file, the caller this error
            errors.append(exc)

    def close(self) -> None:
        """Stop the Java process."""
        if self._proc.poll() is None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
            except OSError:
                pass
            self._proc.kill()
        self._proc.wait()


def meteor(cands: list[str], refs: list[list[str]], jar: str | os.PathLike | None = None
           ) -> tuple[float, list[float]]:
    """METEOR 1.5 as pycocoevalcap computes it, using a shared process started on first use (and again
    after a failure, which raises :class:`ExternalToolError` with the JVM's stderr)."""
    global _PROCESS
    if not cands:
        return 0.0, []
    with _LOCK:
        wanted = find_meteor_jar(jar)
        if _PROCESS is None or not _PROCESS.alive or _PROCESS.jar != wanted:
            if _PROCESS is not None:
                _PROCESS.close()
            _PROCESS = MeteorProcess(wanted)
            atexit.register(_PROCESS.close)
        proc = _PROCESS
    return proc.score(cands, refs)
