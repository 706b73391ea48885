"""Building scene datasets: clips rendered in parallel over processes, and the dataset card.

A :class:`ClipJob` names one scene ``(seed, index, split, config)``, the media to write for it (an MP4 with its
audio track, a WAV, a still frame) and a *view*: a module-level function ``view(scene, info)`` that turns the
scene into the records of one benchmark. Every job is a pure function of its fields, so :func:`run_jobs` may
spread jobs over processes in any order and the result (returned in job order) is the same; two builds with the
same seed write byte-identical annotation files.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.data.registry import register_builder
from xmodal.data.synth import scene_render, scenes, sources, vocabulary
from xmodal.errors import ConfigError

NOT_COMPARABLE = ("These clips are synthetic scenes made from the sprites and sounds listed below. Numbers "
                  "measured on them are NOT comparable with numbers on the real benchmark, whose files this "
                  "dataset only imitates in layout.")


@dataclass(frozen=True)
class ClipJob:
    seed: int
    index: int
    split: str
    config: scenes.SceneConfig
    out: str
    view: Callable[[scenes.Scene, dict[str, Any]], Any]
    video: str | None = None  # relative path of the MP4 (H.264 + AAC) to write
    audio: str | None = None  # relative path of a WAV (16-bit PCM) to write
    frame: tuple[float, str] | None = None  # (time in seconds, relative path) of a still image to write
    transform: Callable[[scenes.Scene], scenes.Scene] | None = None  # e.g. a hard-negative twin of a scene
    stereo: bool = False  # pan each source by its position (the MP4 and WAV get two channels)


def loudness_db(stem: np.ndarray, intervals: list[list[float]]) -> float:
    """dB RMS of ``stem`` over its sounding samples (-inf for a silent object)."""
    sr = scene_render.SAMPLE_RATE
    parts = [stem[round(s * sr): round(e * sr)] for s, e in intervals]
    if not parts:
        return float("-inf")
    x = np.concatenate(parts).astype(np.float64)
    return float(10 * np.log10(np.mean(x**2) + 1e-20))


def render_job(job: ClipJob) -> Any:
    """Generate the scene, write its media, return ``job.view(scene, info)``; ``info`` holds the loudness of each
    object (dB, from its own stem) when audio was rendered."""
    from xmodal.data.io.audio import write_audio
    from xmodal.data.io.image import write_image

    scene = scenes.generate_scene(job.seed, job.index, job.split, job.config)
    if job.transform is not None:
        scene = job.transform(scene)
    out = Path(job.out)
    info: dict[str, Any] = {}
    mix = None
    if job.video or job.audio:
        mix, stems = scene_render.render_audio(scene, with_stems=True, stereo=job.stereo)
        info["loudness"] = {o.id: loudness_db(stems[o.id], o.sounding) for o in scene.objects}
    if job.video:
        (out / job.video).parent.mkdir(parents=True, exist_ok=True)
        scene_render.write_clip(scene, out / job.video, audio=mix)
    if job.audio:
        (out / job.audio).parent.mkdir(parents=True, exist_ok=True)
        assert mix is not None  # rendered above for a job with audio
        write_audio(out / job.audio, mix, scene_render.SAMPLE_RATE, subtype="PCM_16")
    if job.frame:
        t, rel = job.frame
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_image(out / rel, scene_render.render_frames(scene, np.array([t])).frames[0])
    return job.view(scene, info)


def run_jobs(jobs: Sequence[ClipJob], workers: int = 1) -> list[Any]:
    """Results of :func:`render_job` in job order; ``workers`` > 1 runs them in forked processes."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(jobs) < 2:
        return [render_job(j) for j in jobs]
    # Decode or render the sources these scenes use once, here, so forked workers find them cached.
    for job in jobs:
        scene = scenes.generate_scene(job.seed, job.index, job.split, job.config)
        for o in (job.transform(scene) if job.transform else scene).objects:
            if o.sounding:
                sources.load_source(vocabulary.get_class(o.cls).source, o.sound["variant"], job.split)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(render_job, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def split_counts(n: int, val: float = 0.1, test: float = 0.2) -> dict[str, int]:
    """Clips per split for ``n`` in all: at least one in val and test when ``n`` >= 3."""
    if n < 3:
        raise ConfigError(f"a scene build needs n >= 3 clips (one per split), got {n}")
    n_val, n_test = max(1, round(n * val)), max(1, round(n * test))
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def write_card(out: Path, benchmark: str, counts: dict[str, int], config: scenes.SceneConfig, files: list[str],
               notes: str = "") -> None:
    """``README.md`` (the dataset card) and ``card.json``: classes and the provenance of every sprite and sound,
    split sizes, each split's parameter ranges, the files written, and the statement that numbers on these
    scenes are not comparable with the real benchmark's."""
    classes = sorted(set(config.classes) | (set(vocabulary.PROPS) if config.max_props else set()))
    prov = [r for r in vocabulary.provenance() if r["class"] in classes]
    card: dict[str, Any] = {"benchmark": benchmark, "statement": NOT_COMPARABLE, "classes": classes, "provenance": prov,
            "splits": counts, "split_ranges": {s: scenes.SPLIT_RANGES["train" if s == "train" else "heldout"]
                                               for s in counts},
            "textures": {s: list(scenes.TEXTURES["train" if s == "train" else "heldout"]) for s in counts},
            "held_out_pools": {"melodies (music21 chorale indices)": sources.MELODIES,
                               "sentences": sources.SENTENCES, "voices": sources.VOICES,
                               "playback start": {"train": "even-numbered onsets of the recording",
                                                  "heldout": "odd-numbered onsets (where it has several)"}},
            "config": asdict(config), "files": files, "notes": notes}
    out.mkdir(parents=True, exist_ok=True)
    (out / "card.json").write_text(json.dumps(card, indent=1, sort_keys=True, default=list) + "\n")
    lines = [f"# {benchmark} scenes", "", f"**{NOT_COMPARABLE}**", "", notes, "",
             "## Splits", "", *[f"- {s}: {n} clips" for s, n in counts.items()], "",
             ("Val and test draw sprite scale, rotation, pitch shift, playback rate and reverberation from ranges "
              "disjoint from training (gain is shared), and textures, melodies, sentences, voices and playback "
              "starts (onsets of the recording) from disjoint pools:"), "",
             "| split | parameter | ranges |", "|---|---|---|"]
    for s in counts:
        for k, v in card["split_ranges"][s].items():
            lines.append(f"| {s} | {k} | {', '.join(f'[{a}, {b})' for a, b in v)} |")
    lines += ["", "## Classes and sources", "", "| class | stream | package | file | licence |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['class']} | {r['stream']} | {r['package']} | {r['file']} | {r['licence']} |" for r in prov]
    lines += ["", "## Files", "", *[f"- `{f}`" for f in files], ""]
    (out / "README.md").write_text("\n".join(lines))


def make_jobs(out: Path, n: int, seed: int, cfg: scenes.SceneConfig, view: Callable,
              media: Callable[[str], dict], counts: dict[str, int] | None = None,
              transform: Callable | None = None) -> tuple[dict[str, int], list[ClipJob]]:
    """The jobs of a build: ``counts`` clips per split (default :func:`split_counts`), media paths from
    ``media(clip id)``."""
    counts = counts or split_counts(n)
    jobs = [ClipJob(seed, i, split, cfg, str(out), view, transform=transform,
                    **media(scenes.scene_id(seed, i, split)))
            for split, k in counts.items() for i in range(k)]
    return counts, jobs


def write_scenes(out: Path, results: list[dict]) -> None:
    """``scenes.jsonl``: the full ground truth of every scene, one JSON object a line, in job order."""
    with open(out / "scenes.jsonl", "w") as fh:
        fh.writelines(json.dumps(r["scene"], sort_keys=True) + "\n" for r in results)


def scene_record(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    """What every view returns besides its records: the scene's ground truth and split."""
    return {"scene": scenes.annotation(scene), "split": scene.split}


def register_scene_builder(name: str, description: str, fn: Callable[..., Path]) -> None:
    """Register ``fn(root, n=..., seed=..., workers=..., **extra)`` as dataset builder ``name``; the options it
    accepts are the keyword parameters of ``fn``."""
    import inspect

    known = {p for p in inspect.signature(fn).parameters if p != "root"}

    def build(root: str | Path, **options: Any) -> Path:
        if set(options) - known:
            raise ConfigError(f"{name}: unknown options {sorted(set(options) - known)}; known: {sorted(known)}")
        return fn(root, **options)

    build.__qualname__ = f"build_{name}"
    register_builder(name, description, build)
