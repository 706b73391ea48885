"""Scene builds with the features the benchmarks distribute (``-o features=true``): AVE's HDF5 arrays, one row
per line of ``Annotations.txt``, and LLP's per-clip ``.npy`` files, read back through the tasks' official-feature
path, give exactly the streams the raw-clip path computes from the MP4s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.config import load_recipe

REPO = Path(__file__).resolve().parents[1]


def _build(name: str, out: Path) -> Path:
    res = CliRunner().invoke(app, ["data", "build", name, "--out", str(out), "--n", "20", "--seed", "3",
                                   "--workers", "2", "-o", "features=true"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out


def _streams(bundle, keys: tuple[str, ...]) -> list[np.ndarray]:
    return [np.concatenate([c[k].numpy().ravel() for k in keys]) for c in bundle.train_set.clips + bundle.val_set.clips]


@pytest.mark.slow  # builds and decodes 20 clips
def test_ave_scenes_hdf5_features_equal_the_raw_clip_path(tmp_path: Path) -> None:
    import h5py

    from xmodal.data.benchmarks.ave import read_ave
    from xmodal.tasks import av_segments
    from xmodal.tasks.base import build_task

    root = _build("ave-scenes", tmp_path / "ave")
    lines = read_ave(root / "Annotations.txt")
    with h5py.File(root / "features" / "audio_feature.h5") as fa, h5py.File(root / "features" / "visual_feature.h5") as fv:
        audio, visual = fa["avadataset"][()], fv["avadataset"][()]
    assert audio.shape == (len(lines), 10, 128) and visual.shape == (len(lines), 10, 7, 7, 64)
    assert audio.dtype == visual.dtype == np.float32
    third = av_segments.clip_features([root / "AVE" / f"{lines[3].video_id}.mp4"])[0]  # row i is line i's clip
    assert np.array_equal(audio[3], third["audio"].numpy()) and np.array_equal(visual[3], third["visual"].numpy())
    assert "features/audio_feature.h5" in (root / "README.md").read_text(encoding="utf-8")

    common = [f"data.root={root}", "model.acoustic=false", "model.evidence=false"]
    recipe = REPO / "recipes" / "ave.yaml"
    official = build_task(load_recipe(recipe, [*common, f"data.features={root / 'features'}"]))
    raw = build_task(load_recipe(recipe, common))
    for a, b in zip(_streams(official, ("audio", "visual")), _streams(raw, ("audio", "visual")), strict=True):
        assert np.allclose(a, b, atol=1e-6)


@pytest.mark.slow  # builds and decodes 20 clips
def test_llp_scenes_npy_features_equal_the_raw_clip_path(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    root = _build("llp-scenes", tmp_path / "llp")
    clips = sorted(p.stem for p in (root / "LLP_dataset" / "video").glob("*.mp4"))
    for folder, shape in (("vggish", (10, 128)), ("res152", (80, 64)), ("r2plus1d_18", (10, 128))):
        files = sorted((root / "features" / folder).iterdir())
        assert [f.stem for f in files] == clips  # one file a clip, no partial files left
        assert np.load(files[0]).shape == shape and np.load(files[0]).dtype == np.float32

    common = [f"data.root={root}", "model.acoustic=false"]
    recipe = REPO / "recipes" / "avvp.yaml"
    official = build_task(load_recipe(recipe, [*common, f"data.features={root / 'features'}"]))
    raw = build_task(load_recipe(recipe, common))
    keys = ("audio", "visual", "motion")
    for a, b in zip(_streams(official, keys), _streams(raw, keys), strict=True):
        assert np.allclose(a, b, atol=1e-6)
