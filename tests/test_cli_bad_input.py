"""The ``xmodal`` commands on bad input: a typed error naming the file or option (exit status 2), never a raw
traceback or a silently odd result. Real recordings (Debian alsa-utils voice clips) where audio is needed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import ConfigError, CorruptFileError, DataError, MissingFileError, XmodalError

ALSA = Path("/usr/share/sounds/alsa")
needs_alsa = pytest.mark.skipif(not (ALSA / "Front_Center.wav").exists(), reason="alsa-utils sounds not installed")
runner = CliRunner()


def fails(args: list[str], error: type[XmodalError], *needles: str) -> XmodalError:
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and isinstance(res.exception, error), (res.output, res.exception)
    for needle in needles:
        assert needle in str(res.exception), (needle, str(res.exception))
    return res.exception


@pytest.fixture
def audio_pair(tmp_path: Path) -> tuple[Path, Path]:
    if not (ALSA / "Front_Center.wav").exists():
        pytest.skip("alsa-utils sounds not installed")
    ref, gen = tmp_path / "ref", tmp_path / "gen"
    ref.mkdir()
    gen.mkdir()
    shutil.copy(ALSA / "Front_Center.wav", ref / "a.wav")
    shutil.copy(ALSA / "Front_Center.wav", gen / "a.wav")
    return ref, gen


def test_missing_folders_and_files(tmp_path: Path, audio_pair) -> None:
    ref, gen = audio_pair
    nope = str(tmp_path / "nope")
    fails(["eval", "audio", "--ref", nope, "--gen", str(gen), "--metrics", "snr"], MissingFileError, nope)
    fails(["eval", "music", "--gen", nope, "--metrics", "SI"], MissingFileError, nope, "--gen")
    fails(["eval", "music", "--gen", str(gen), "--ref", nope, "--metrics", "beat_hit"], MissingFileError, "--ref")
    fails(["eval", "mos", nope + ".csv"], MissingFileError, nope)
    fails(["data", "info", nope], MissingFileError, nope)
    fails(["data", "verify", nope], MissingFileError, nope)


def test_options_that_name_nothing_or_too_little(tmp_path: Path, audio_pair) -> None:
    ref, gen = audio_pair
    base = ["eval", "audio", "--ref", str(ref), "--gen", str(gen)]
    fails(base + ["--metrics", ","], ConfigError, "--metrics")
    fails(base + ["--metrics", "snr", "--workers", "-1"], ConfigError, "--workers", "-1")
    fails(base + ["--metrics", "snr", "--out", str(ref)], ConfigError, "--out", "directory")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    fails(base + ["--metrics", "snr", "--out", str(blocker / "scores.json")], ConfigError, "--out")
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"1": ["a dog runs"]}))
    cands = tmp_path / "cands.json"
    cands.write_text(json.dumps({"1": "a dog"}))
    fails(["eval", "captions", "--refs", str(refs), "--preds", str(cands), "--metrics", ","], ConfigError)
    jar = tmp_path / "meteor.jar"
    jar.write_text("not a jar")
    fails(["eval", "captions", "--refs", str(refs), "--preds", str(cands), "--metrics", "meteor",
           "--meteor-jar", str(jar)], CorruptFileError, str(jar))


def test_out_is_written_when_it_can_be(tmp_path: Path, audio_pair) -> None:
    ref, gen = audio_pair
    out = tmp_path / "new" / "scores.json"
    res = runner.invoke(app, ["eval", "audio", "--ref", str(ref), "--gen", str(gen), "--metrics", "si_sdr",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == json.loads(res.stdout)


def test_duplicate_json_keys_are_refused(tmp_path: Path) -> None:
    refs = tmp_path / "refs.json"
    refs.write_text('{"1": ["a dog runs"], "1": ["a cat sits"]}')  # json.loads would keep the cat only
    cands = tmp_path / "cands.json"
    cands.write_text('{"1": "a dog"}')
    fails(["eval", "captions", "--refs", str(refs), "--preds", str(cands), "--metrics", "bleu"], DataError,
          str(refs), "'1'", "twice")
    hyps = tmp_path / "hyps.json"
    hyps.write_text('{"a": "one", "b": "two", "a": "three"}')
    fails(["eval", "wer", "--refs", str(hyps), "--hyps", str(hyps)], DataError, "'a'")


def test_mos_csv_not_utf8_and_one_rater_gives_null(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("rater,item,system,score\nRené,i1,A,3\n".encode("latin-1"))
    fails(["eval", "mos", str(latin)], CorruptFileError, str(latin), "UTF-8")
    one = tmp_path / "one.csv"
    one.write_text("rater,item,system,score\nr1,i1,A,3\nr1,i2,A,4\nr1,i1,B,2\nr1,i2,B,5\n")
    res = runner.invoke(app, ["eval", "mos", str(one)])
    assert res.exit_code == 0, res.output
    assert "NaN" not in res.stdout
    out = json.loads(res.stdout)  # strict JSON
    assert [s["ci95"] for s in out["systems"]] == [None, None]  # one rater: no confidence interval
    assert [s["mos"] for s in out["systems"]] == [3.5, 3.5]


def test_wer_lines_end_only_at_newlines(tmp_path: Path) -> None:
    jiwer = pytest.importorskip("jiwer")
    refs_text = ["the cat\x0bsat", "on the\u2028mat", "a dog\x1cbarks", "end\x85here"]
    hyps_text = ["the cat sat", "on a mat", "a dog barks", "end here"]
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    refs.write_bytes(("\r\n".join(refs_text) + "\r\n").encode())  # Windows line ends are line ends
    hyps.write_text("\n".join(hyps_text) + "\n")
    res = runner.invoke(app, ["eval", "wer", "--refs", str(refs), "--hyps", str(hyps)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_utterances"] == 4
    assert out["wer"] == pytest.approx(jiwer.wer(refs_text, hyps_text), abs=1e-12)


def test_the_console_script_exits_2_on_typed_errors(tmp_path: Path) -> None:
    code = "import sys; from xmodal.cli import main; sys.argv = ['xmodal'] + sys.argv[1:]; main()"
    res = subprocess.run([sys.executable, "-c", code, "eval", "mos", str(tmp_path / "absent.csv")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "MissingFileError" in res.stderr and "absent.csv" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("kind", ["undecodable", "empty", "nan"])
@pytest.mark.parametrize("metric", ["beat_hit", "SI"])
def test_music_metrics_on_bad_audio(tmp_path: Path, audio_pair, kind: str, metric: str) -> None:
    import numpy as np
    import soundfile as sf

    from xmodal.errors import EmptyInputError, NonFiniteError

    ref, gen = audio_pair
    bad = gen / "a.wav"
    if kind == "undecodable":
        bad.write_text("not audio at all\n")
        error: type[XmodalError] = CorruptFileError
    elif kind == "empty":
        sf.write(bad, np.zeros(0, np.float32), 22050, subtype="FLOAT")
        error = EmptyInputError
    else:
        x = np.sin(np.arange(22050) / 10).astype(np.float32)
        x[100] = np.nan
        sf.write(bad, x, 22050, subtype="FLOAT")
        error = NonFiniteError
    args = ["eval", "music", "--gen", str(gen), "--metrics", metric]
    fails(args + (["--ref", str(ref)] if metric == "beat_hit" else []), error, "a.wav")


def test_missing_image_and_video_folders(tmp_path: Path) -> None:
    from xmodal.metrics.generation.images import list_images
    from xmodal.metrics.generation.videos import list_videos

    for lister in (list_images, list_videos):
        with pytest.raises(MissingFileError, match="nope"):
            lister(tmp_path / "nope")
