"""``xmodal eval ave | avvp | sound-localization | avqa``: the audio-visual benchmarks' official metrics on
prediction files, printed as one JSON object (percentages, unrounded); progress notes go to stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from xmodal.cli.eval import eval_app


def _note(text: str) -> None:
    typer.echo(text, err=True)


def _string_map(path: Path, what: str) -> dict:
    from xmodal.data.benchmarks._files import read_json
    from xmodal.errors import DataError

    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object {{id: {what}}}", path)
    return data


@eval_app.command("ave")
def eval_ave(
    annotations: Annotated[Path, typer.Option("--annotations", help="testSet.txt (Category&VideoID&Quality&Start&End).")],
    predictions: Annotated[Path, typer.Option("--predictions", help='pred.json: {"VideoID": [10 labels]}.')],
) -> None:
    """AVE segment accuracy over all 1-s segments, background included (supervised_main.py)."""
    from xmodal.data.benchmarks.ave import ave_segment_labels, read_ave
    from xmodal.errors import DataError
    from xmodal.metrics.ave import ave_segment_accuracy

    truth = ave_segment_labels(read_ave(annotations, unique=True), annotations)
    preds = _string_map(predictions, "10 labels")
    for clip, labels in preds.items():
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"clip {clip!r}: expected a list of label strings, got {labels!r}", predictions)
    accuracy = ave_segment_accuracy(truth, preds, source=str(predictions))
    _note(f"scored {len(truth)} clips, {10 * len(truth)} segments")
    typer.echo(json.dumps({"accuracy": accuracy}))


@eval_app.command("avvp")
def eval_avvp(
    annotations: Annotated[Path, typer.Option(
        "--annotations", help="Folder with AVVP_{split}_pd.csv, AVVP_eval_audio.csv, AVVP_eval_visual.csv.")],
    predictions: Annotated[Path, typer.Option("--predictions", help="Folder with audio.csv and visual.csv.")],
    split: Annotated[str, typer.Option("--split", help="test or val: which video list is scored.")] = "test",
    classes: Annotated[Path | None, typer.Option(
        "--classes", help="Class vocabulary, one name a line (default: the 25 LLP classes).")] = None,
) -> None:
    """AVVP segment- and event-level F-scores (audio, visual, audio-visual, Type@AV, Event@AV), as eval_metrics.py."""
    from xmodal.data.benchmarks.avvp import (
        AVVP_CLASSES,
        rasterize,
        read_avvp_classes,
        read_avvp_events,
        read_avvp_weak,
    )
    from xmodal.errors import ConfigError
    from xmodal.metrics.avvp import avvp_scores

    if split not in ("test", "val"):
        raise ConfigError(f"--split must be test or val, got {split!r}")
    vocab = read_avvp_classes(classes) if classes is not None else AVVP_CLASSES
    videos = [row.filename for row in read_avvp_weak(annotations / f"AVVP_{split}_pd.csv", classes=None)]
    grids = {}
    for name, path in (("gt_a", annotations / "AVVP_eval_audio.csv"), ("gt_v", annotations / "AVVP_eval_visual.csv"),
                       ("pred_a", predictions / "audio.csv"), ("pred_v", predictions / "visual.csv")):
        grids[name] = rasterize(read_avvp_events(path, classes=vocab), videos, vocab)
    scores = avvp_scores(*([grids[k][v] for v in videos] for k in ("gt_a", "gt_v", "pred_a", "pred_v")))
    _note(f"scored {len(videos)} videos of AVVP_{split}_pd.csv over {len(vocab)} classes")
    typer.echo(json.dumps(scores))


def _read_heatmaps(path: Path) -> dict:
    import zipfile

    import numpy as np

    from xmodal.errors import CorruptFileError, DataError

    if not path.is_file():
        raise DataError("file not found", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            maps = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CorruptFileError(f"not a readable .npz of heatmaps ({exc})", path) from exc
    if not maps:
        raise DataError("holds no heatmap", path)
    return maps


@eval_app.command("sound-localization")
def eval_sound_localization(
    annotations: Annotated[Path, typer.Option("--annotations", help="vggss.json, or the Flickr-SoundNet XML folder.")],
    predictions: Annotated[Path, typer.Option("--predictions", help="heatmaps.npz: one 2-D map per sample id.")],
) -> None:
    """cIoU success rate at 0.5, AUC and mean cIoU, as the LVS test code (median binarisation, consensus maps)."""
    from xmodal.data.benchmarks.flickr_soundnet import read_flickr_dir
    from xmodal.data.benchmarks.vggss import read_vggss, vggss_by_file
    from xmodal.errors import DataError, ShapeError
    from xmodal.metrics.localization import (
        binarize_lvs,
        ciou,
        flickr_gt_map,
        localization_scores,
        vggss_gt_map,
    )

    if annotations.is_dir():
        flickr = read_flickr_dir(annotations)
        truth = {k: (lambda r=r: flickr_gt_map([(b.xmin, b.ymin, b.xmax, b.ymax) for b in r.boxes]))
                 for k, r in flickr.items()}
    else:
        vggss = vggss_by_file(read_vggss(annotations), annotations)
        truth = {k: (lambda r=r: vggss_gt_map(r.bboxes)) for k, r in vggss.items()}
    maps = _read_heatmaps(predictions)
    values = []
    for key, heatmap in maps.items():
        if key not in truth:
            raise DataError(f"heatmap {key!r} has no annotation in {annotations}", predictions)
        try:
            values.append(ciou(binarize_lvs(heatmap), truth[key]()))
        except DataError as exc:
            raise ShapeError(f"heatmap {key!r}: {exc}", predictions) from exc
    _note(f"scored {len(values)} samples ({len(truth) - len(values)} annotated samples have no heatmap)")
    typer.echo(json.dumps(localization_scores(values)))


@eval_app.command("avqa")
def eval_avqa(
    annotations: Annotated[Path, typer.Option("--annotations", help="avqa-test.json (MUSIC-AVQA layout).")],
    predictions: Annotated[Path, typer.Option("--predictions", help='pred.json: {"question_id": "answer"}.')],
) -> None:
    """MUSIC-AVQA accuracy per question type, per scenario (pooled) and overall, as main_avst.py's test."""
    from xmodal.data.benchmarks.music_avqa import read_avqa
    from xmodal.errors import DataError
    from xmodal.metrics.avqa import avqa_accuracy

    records = read_avqa(annotations)
    preds = _string_map(predictions, "answer")
    for qid, answer in preds.items():
        if not isinstance(answer, str):
            raise DataError(f"question {qid!r}: the answer must be a string, got {answer!r}", predictions)
    _note(f"scored {len(records)} questions ({sum(str(r.question_id) in preds for r in records)} with a prediction)")
    typer.echo(json.dumps(avqa_accuracy(records, preds)))
