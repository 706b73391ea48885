"""``xmodal eval captions`` (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE) and ``xmodal eval wer`` (WER and CER)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import typer

from xmodal.cli._options import metric_list
from xmodal.cli.eval import eval_app


def _str_keys(mapping: dict, path: Path) -> dict:
    """Ids as strings, so a COCO file's integer ids pair with a plain JSON file's string keys."""
    from xmodal.errors import DataError

    out: dict = {}
    for k, v in mapping.items():
        key = str(k)
        if key in out:
            raise DataError(f"id {k!r} appears twice (as {key!r} once written as text)", path)
        out[key] = v
    return out


@eval_app.command("captions")
def captions(
    refs: Path = typer.Option(..., "--refs", help="References: COCO annotations, COCO results, or {id: [captions]}."),
    preds: Path = typer.Option(..., "--preds", help="Candidates: COCO results [{image_id, caption}] or {id: caption}."),
    metrics: Optional[str] = typer.Option(None, "--metrics",
                                          help="Comma-separated: bleu,meteor,rouge_l,cider_d,spice "
                                               "(default: all but spice)."),
    no_tokenize: bool = typer.Option(False, "--no-tokenize",
                                     help="Take captions as space-separated tokens (skip PTB tokenization)."),
    meteor_jar: Optional[Path] = typer.Option(None, "--meteor-jar", help="METEOR 1.5 jar (default: pycocoevalcap's)."),
    spice_jar: Optional[Path] = typer.Option(None, "--spice-jar", help="spice-1.0.jar with its CoreNLP models."),
) -> None:
    """Score generated captions like pycocoevalcap and print the scores as JSON."""
    from xmodal.metrics.captions import evaluate
    from xmodal.metrics.text.io import read_candidates, read_references

    references = _str_keys(read_references(refs), refs)
    candidates = _str_keys(read_candidates(preds), preds)
    wanted = None if metrics is None else metric_list(metrics)
    scores = evaluate(references, candidates, metrics=wanted, tokenize=not no_tokenize,
                      meteor_jar=meteor_jar, spice_jar=spice_jar)
    typer.echo(json.dumps(scores, indent=2))


def read_utterances(path: Path) -> Any:
    """Transcripts from a text file (one utterance per line) or JSON (a list of strings or {id: text})."""
    from xmodal.config.loaders import loads_json, read_text
    from xmodal.errors import DataError

    text = read_text(path, "transcript")
    if path.suffix.lower() != ".json":
        # Only \n and \r\n end an utterance: str.splitlines would also split on \v, \f, \x1c-\x1e, U+0085,
        # U+2028/9, which can sit inside a transcript. A final newline does not add an empty utterance.
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [line[:-1] if line.endswith("\r") else line for line in lines]
    data = loads_json(text, path)
    items: Iterable[tuple[object, object]]
    if isinstance(data, dict):
        data = _str_keys(data, path)
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        raise DataError("expected a JSON list of strings or an object {id: text}", path)
    for k, v in items:
        if not isinstance(v, str):
            raise DataError(f"utterance {k!r} is a {type(v).__name__}, not a string", path)
    return data


@eval_app.command("wer")
def wer_command(
    refs: Path = typer.Option(..., "--refs", help="Reference transcripts: one per line, or JSON list / {id: text}."),
    hyps: Path = typer.Option(..., "--hyps", help="Hypotheses, in the same layout as --refs."),
    normalize: str = typer.Option("jiwer", "--normalize",
                                  help="jiwer (as jiwer's defaults), none, lower_punct or jiwer_standardize."),
) -> None:
    """Corpus WER and CER (jiwer's numbers) with their edit counts, printed as JSON."""
    from xmodal.errors import MetricInputError
    from xmodal.metrics.speech import cer_details, wer_details

    r, h = read_utterances(refs), read_utterances(hyps)
    if isinstance(r, dict) != isinstance(h, dict):
        raise MetricInputError("one file maps ids to text and the other does not; use the same layout", hyps)
    if isinstance(r, dict):
        only_r = [k for k in r if k not in h]
        only_h = [k for k in h if k not in r]
        if only_r or only_h:
            k, side = (only_r[0], "--hyps") if only_r else (only_h[0], "--refs")
            raise MetricInputError(f"id {k!r} is missing from {side} ({len(only_r) + len(only_h)} unpaired ids)",
                                   hyps if only_r else refs)
        ids = list(r)
        r, h = [r[k] for k in ids], [h[k] for k in ids]
    elif len(r) != len(h):
        raise MetricInputError(f"{len(r)} reference utterances but {len(h)} hypotheses", hyps)
    w, c = wer_details(r, h, normalize), cer_details(r, h, normalize)
    out = {"wer": w.error_rate, "cer": c.error_rate, "n_utterances": len(r), "normalize": normalize,
           "words": {"substitutions": w.totals.substitutions, "deletions": w.totals.deletions,
                     "insertions": w.totals.insertions, "hits": w.totals.hits, "reference_words": w.totals.ref_len},
           "characters": {"substitutions": c.totals.substitutions, "deletions": c.totals.deletions,
                          "insertions": c.totals.insertions, "hits": c.totals.hits,
                          "reference_characters": c.totals.ref_len}}
    typer.echo(json.dumps(out, indent=2))
