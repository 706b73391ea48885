"""``xmodal eval grounding | temporal-grounding | entailment | stvg | retrieval``: vision-language benchmarks
scored as their official code scores them, from the official annotation files and a predictions file. One JSON
object on stdout, values unrounded and in percent; a malformed file is a typed error (exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from xmodal.cli.eval import eval_app


def _emit(result: dict) -> None:
    typer.echo(json.dumps(result, indent=2))


def _log(message: str) -> None:
    typer.echo(message, err=True)


def _load_predictions(path: Path) -> Any:
    from xmodal.data.benchmarks._vl_files import load_json

    return load_json(path)


def _numbers(value: Any, n: int, where: str, path: Path) -> list[float]:
    from xmodal.data.benchmarks._vl_files import number_list

    return number_list(value, n, "the prediction", where, path)


@eval_app.command("grounding")
def grounding(
    refs: Annotated[Path, typer.Option("--refs", help="refs(unc).p / refs(umd).p of the refer toolkit.")],
    instances: Annotated[Path, typer.Option("--instances", help="COCO instances.json of the same dataset.")],
    predictions: Annotated[Path, typer.Option("--predictions", help='JSON {"<sent_id>": [x, y, w, h]}.')],
    split: Annotated[str, typer.Option("--split", help="val, testA, testB (RefCOCO/+), val-u or test-u (RefCOCOg umd).")],
) -> None:
    """Referring-expression accuracy (IoU >= 0.5, MAttNet's inclusive-pixel IoU) on one split."""
    from xmodal.data.benchmarks.refcoco import read_instances, read_refs, select_split
    from xmodal.errors import DataError
    from xmodal.metrics.grounding import rec_accuracy

    split = {"val-u": "val", "test-u": "test"}.get(split, split)  # RefCOCOg (umd)'s names in the papers
    all_refs = read_refs(refs)
    boxes = {a.id: a.bbox for a in read_instances(instances).annotations}
    targets = {}
    for ref in select_split(all_refs, split):
        if ref.ann_id not in boxes:
            raise DataError(f"ref {ref.ref_id}: annotation {ref.ann_id} is not in the instances", source=instances)
        for s in ref.sentences:
            targets[s.sent_id] = boxes[ref.ann_id]
    known = {s.sent_id for r in all_refs for s in r.sentences}
    raw = _load_predictions(predictions)
    if not isinstance(raw, dict):
        raise DataError('expected an object {"<sent_id>": [x, y, w, h]}', source=predictions)
    preds = {}
    for key, box in raw.items():
        try:
            sent_id = int(key)
        except ValueError:
            raise DataError(f"key {key!r} is not a sentence id", source=predictions) from None
        if sent_id not in known:
            raise DataError(f"sentence {sent_id} is not in {refs}", source=predictions)
        if sent_id in preds:
            raise DataError(f"sentence {sent_id} is predicted twice (key {key!r})", source=predictions)
        preds[sent_id] = _numbers(box, 4, f"sentence {key}", predictions)
    _log(f"{split}: {len(targets)} sentences, {len(set(preds) & set(targets))} predicted")
    _emit(rec_accuracy(preds, targets))


@eval_app.command("temporal-grounding")
def temporal_grounding(
    annotations: Annotated[Path, typer.Option("--annotations",
                                     help="Charades-STA 'vid start end##sentence' file (or ActivityNet Captions "
                                          "JSON).")],
    predictions: Annotated[Path, typer.Option("--predictions",
                                     help='JSON list, one per annotation: {"video", "segments", "scores"}.')],
    nms: Annotated[bool, typer.Option("--nms", help="TALL's temporal NMS (threshold IoU - 0.05) before ranking.")] = False,
) -> None:
    """R@{1,5} at IoU {0.3, 0.5, 0.7} and top-1 mIoU, as TALL's main.py."""
    from xmodal.data.benchmarks.charades_sta import read_activitynet_captions, read_charades_sta
    from xmodal.errors import DataError
    from xmodal.metrics.temporal import temporal_grounding_metrics

    queries = (read_activitynet_captions(annotations) if annotations.suffix == ".json"
               else read_charades_sta(annotations))
    raw = _load_predictions(predictions)
    if not isinstance(raw, list) or len(raw) != len(queries):
        got = f"{len(raw)} entries" if isinstance(raw, list) else type(raw).__name__
        raise DataError(f"expected a list of {len(queries)} entries, one per annotation, got {got}",
                        source=predictions)
    segments, scores = [], []
    for k, (q, entry) in enumerate(zip(queries, raw)):
        where = f"entry #{k}"
        if not isinstance(entry, dict) or entry.get("video") != q.video:
            video = entry.get("video") if isinstance(entry, dict) else entry
            raise DataError(f"{where}: is for video {video!r}, but annotation #{k} is {q.video!r}",
                            source=predictions)
        segs = entry.get("segments")
        if not isinstance(segs, list):
            raise DataError(f"{where}: 'segments' must be a list of [start, end]", source=predictions)
        segments.append([_numbers(s, 2, f"{where} segment #{j}", predictions) for j, s in enumerate(segs)])
        if "scores" in entry:
            scores.append(_numbers(entry["scores"], len(segs), f"{where} scores", predictions))
        elif nms:
            raise DataError(f"{where}: --nms ranks by score, but the entry has no 'scores'", source=predictions)
    _log(f"{len(queries)} queries, NMS {'on' if nms else 'off'}")
    _emit(temporal_grounding_metrics([(q.start, q.end) for q in queries], segments,
                                     scores if nms else None, nms=nms))


@eval_app.command("entailment")
def entailment(
    annotations: Annotated[Path, typer.Option("--annotations", help="snli_ve_{dev,test}.jsonl.")],
    predictions: Annotated[Path, typer.Option("--predictions",
                                     help='JSON {"<pairID>": "entailment" | "neutral" | "contradiction"}.')],
) -> None:
    """Visual entailment accuracy on SNLI-VE."""
    from xmodal.data.benchmarks.snli_ve import read_snli_ve
    from xmodal.errors import DataError, MetricInputError
    from xmodal.metrics.entailment import entailment_accuracy

    gold = {p.pair_id: p.gold_label for p in read_snli_ve(annotations)}
    raw = _load_predictions(predictions)
    if not isinstance(raw, dict):
        raise DataError('expected an object {"<pairID>": label}', source=predictions)
    try:
        result = entailment_accuracy(raw, gold)
    except MetricInputError as exc:
        raise DataError(str(exc), source=predictions) from exc
    _log(f"{len(gold)} pairs, {len(raw)} predictions")
    _emit(result)


def _tube_predictions(path: Path) -> dict[str, dict[int, list[float]]]:
    from xmodal.errors import DataError

    raw = _load_predictions(path)
    if not isinstance(raw, dict):
        raise DataError('expected an object {"<key>": {"boxes": {"<frame>": [x1, y1, x2, y2]}}}', source=path)
    out = {}
    for key, entry in raw.items():
        boxes = entry.get("boxes") if isinstance(entry, dict) else None
        if not isinstance(boxes, dict):
            raise DataError(f"{key}: expected {{\"boxes\": {{frame: box}}}}", source=path)
        frames = {}
        for frame, box in boxes.items():
            try:
                number = int(frame)
            except ValueError:
                raise DataError(f"{key}: frame {frame!r} is not a frame number", source=path) from None
            frames[number] = _numbers(box, 4, f"{key} frame {frame}", path)
        out[key] = frames
    return out


@eval_app.command("stvg")
def stvg(
    annotations: Annotated[Path, typer.Option("--annotations", help="HC-STVG test.json / valv2.json, or VidSTG "
                                                                "test_annotations.json with --format vidstg.")],
    predictions: Annotated[Path, typer.Option("--predictions",
                                     help='JSON {"<key>": {"boxes": {"<frame>": [x1, y1, x2, y2]}}}.')],
    format: Annotated[str, typer.Option("--format", help="hcstvg (v1 or v2) or vidstg.")] = "hcstvg",
    vidor: Annotated[Path | None, typer.Option("--vidor", help="VidOR annotation folder (VidSTG boxes).")] = None,
) -> None:
    """m_tIoU, m_vIoU, vIoU@0.3 and vIoU@0.5 as TubeDETR's evaluator (5 fps, at most 200 frames). VidSTG keys
    are the sentence numbers of TubeDETR's preprocessing; declarative and interrogative are reported apart."""
    from xmodal.errors import DataError, MetricInputError
    from xmodal.metrics.stvg import hcstvg_targets, stvg_metrics, vidstg_targets

    preds = _tube_predictions(predictions)
    try:
        if format == "hcstvg":
            from xmodal.data.benchmarks.hc_stvg import read_hc_stvg

            targets = hcstvg_targets(read_hc_stvg(annotations))
            _log(f"{len(targets)} clips, {len(preds)} predicted")
            _emit(stvg_metrics(targets, preds))
            return
        if format != "vidstg":
            raise DataError(f"unknown format {format!r}; choose hcstvg or vidstg", source="--format")
        if vidor is None:
            raise DataError("VidSTG boxes live in the VidOR annotations: pass --vidor", source="--vidor")
        from xmodal.data.benchmarks.vidstg import read_vidor_folder, read_vidstg, vidstg_queries

        targets = vidstg_targets(vidstg_queries(read_vidstg(annotations)), read_vidor_folder(vidor))
        known = {t.key for t in targets}
        unknown = sorted(set(preds) - known)
        if unknown:
            raise DataError(f"predictions for sentences not in the annotations, e.g. {unknown[:3]}",
                            source=predictions)
        result = {}
        for qtype in ("declarative", "interrogative"):
            subset = [t for t in targets if t.qtype == qtype]
            if subset:
                result[qtype] = stvg_metrics(subset, {t.key: preds[t.key] for t in subset if t.key in preds})
        _log(f"{len(targets)} sentences, {len(preds)} predicted")
        _emit(result)
    except MetricInputError as exc:
        raise DataError(str(exc), source=predictions if exc.source == "predictions" else annotations) from exc


@eval_app.command("retrieval")
def retrieval(
    annotations: Annotated[Path, typer.Option("--annotations",
                                     help="Karpathy JSON, MSRVTT_JSFUSION_test.csv, Clotho or AudioCaps CSV.")],
    similarity: Annotated[Path, typer.Option("--similarity", help="(captions, items) similarity matrix, .npy.")],
    protocol: Annotated[str | None, typer.Option("--protocol",
                                           help="coco-5k, coco-1k, flickr, msrvtt-1ka, clotho or audiocaps "
                                                "(default: from the file).")] = None,
    ties: Annotated[str, typer.Option("--ties",
                             help="strict: rank = number of wrong items scored strictly higher than the best "
                                  "correct one (CLIP4Clip's first tied position); pessimistic: items scored as "
                                  "high count too, so a constant model ranks last.")] = "strict",
) -> None:
    """R@1/5/10, MedR and MeanR in both directions, any-of-five for item-to-text, ranks by the strict tie rule
    ``rank = #(s > s_gt)`` unless ``--ties pessimistic``."""
    import numpy as np

    from xmodal.errors import CorruptFileError, DataError
    from xmodal.metrics.retrieval_protocols import evaluate_protocol, guess_protocol, read_layout

    rule = {"strict": "optimistic", "optimistic": "optimistic", "pessimistic": "pessimistic"}.get(ties)
    if rule is None:
        raise DataError(f"--ties must be strict or pessimistic, got {ties!r}", source="--ties")
    name = protocol or guess_protocol(annotations)
    layout = read_layout(annotations, name)
    if not similarity.is_file():
        raise FileNotFoundError(f"{similarity}: no such file")
    try:
        sim = np.load(similarity, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError on a bad .npy
        raise CorruptFileError(f"cannot read the similarity matrix: {exc}", source=similarity) from exc
    _log(f"{name}: {len(layout.caption_item)} captions, {layout.n_items} items, ties {ties}")
    try:
        _emit(evaluate_protocol(sim, layout, rule))  # type: ignore[arg-type]
    except DataError as exc:
        raise DataError(str(exc), source=similarity) from exc
