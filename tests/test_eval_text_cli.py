"""``xmodal eval captions`` and ``xmodal eval wer`` through typer's CliRunner, on real captions (the human-written
emoji descriptions the ``emoji`` package ships, one held out per image as the candidate) written to disk in all
three layouts: COCO annotations, COCO results, and plain ``{id: ...}`` JSON. Scores must equal the library call
exactly and pycocoevalcap to 1e-9 (on pre-tokenized text, so no Java is needed); WER/CER equal jiwer to 1e-12."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_run import eval_json, runner

from xmodal.cli import app
from xmodal.errors import DataError, MetricInputError
from xmodal.metrics.captions import evaluate

emoji = pytest.importorskip("emoji")
FAST = "bleu,rouge_l,cider_d"


@pytest.fixture(scope="module")
def captions() -> tuple[dict[int, list[str]], dict[int, str]]:
    refs, cands = {}, {}
    for d in emoji.EMOJI_DATA.values():
        texts = list(dict.fromkeys([d["en"].strip(":").replace("_", " ")]
                                   + [a.strip(":").replace("_", " ") for a in d.get("alias", [])]))
        if len(texts) >= 2:
            i = len(refs) * 7 + 1  # COCO-like integer image ids
            cands[i], refs[i] = texts[0], texts[1:]
    assert len(refs) > 300
    return refs, cands


def _write_layouts(tmp_path, refs, cands):
    """The same captions as COCO annotations / COCO results / plain JSON (string keys, as JSON forces)."""
    files = {
        "coco_ann_refs": {"images": [{"id": i} for i in refs],
                          "annotations": [{"image_id": i, "id": n, "caption": c}
                                          for n, (i, cs) in enumerate((i, cs) for i, cs in refs.items()) for c in cs]},
        "coco_res_refs": [{"image_id": i, "caption": c} for i, cs in refs.items() for c in cs],
        "plain_refs": {str(i): cs for i, cs in refs.items()},
        "coco_res_preds": [{"image_id": i, "caption": c} for i, c in cands.items()],
        "plain_preds": {str(i): c for i, c in cands.items()},
        "plain_list_preds": {str(i): [c] for i, c in cands.items()},
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return paths


def _run(*args: str) -> dict:
    return eval_json(*args, catch_exceptions=False)


def test_captions_all_layouts_give_the_library_numbers(tmp_path, captions):
    refs, cands = captions
    paths = _write_layouts(tmp_path, refs, cands)
    expected = evaluate(refs, cands, metrics=FAST.split(","))
    assert set(expected) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    for r in ("coco_ann_refs", "coco_res_refs", "plain_refs"):
        for p in ("coco_res_preds", "plain_preds", "plain_list_preds"):
            got = _run("captions", "--refs", str(paths[r]), "--preds", str(paths[p]), "--metrics", FAST)
            assert got == expected, (r, p)


def test_captions_no_tokenize_equals_pycocoevalcap(tmp_path, captions):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs, cands = captions
    # Pre-tokenized input (lower-case, space-separated), as --no-tokenize expects.
    refs = {i: [" ".join(c.lower().split()) for c in cs] for i, cs in refs.items()}
    cands = {i: " ".join(c.lower().split()) for i, c in cands.items()}
    paths = _write_layouts(tmp_path, refs, cands)
    got = _run("captions", "--refs", str(paths["coco_ann_refs"]), "--preds", str(paths["coco_res_preds"]),
               "--metrics", FAST, "--no-tokenize")
    gts, res = {i: cs for i, cs in refs.items()}, {i: [cands[i]] for i in refs}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        assert abs(got[f"BLEU-{k + 1}"] - bleu[k]) <= 1e-9
    assert abs(got["ROUGE-L"] - Rouge().compute_score(gts, res)[0]) <= 1e-9
    assert abs(got["CIDEr-D"] - Cider().compute_score(gts, res)[0]) <= 1e-9
    # Tokenization matters: the default run differs from the pre-tokenized one on raw text.
    raw = _run("captions", "--refs", str(paths["plain_refs"]), "--preds", str(paths["plain_preds"]),
               "--metrics", "bleu")
    assert raw == evaluate(refs, cands, metrics=["bleu"])
    assert abs(raw["BLEU-4"] - got["BLEU-4"]) > 1e-3  # PTB tokenization drops the names' punctuation


def test_captions_bad_input_is_a_clear_error(tmp_path, captions):
    refs, cands = captions
    paths = _write_layouts(tmp_path, refs, dict(list(cands.items())[:-1]))
    missing = list(refs)[-1]
    with pytest.raises(MetricInputError, match=f"id '{missing}' has references but no candidate"):
        runner.invoke(app, ["eval", "captions", "--refs", str(paths["plain_refs"]), "--preds",
                            str(paths["plain_preds"]), "--metrics", FAST], catch_exceptions=False)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1}]')
    with pytest.raises(DataError, match="entry 0 lacks 'image_id' or 'caption'"):
        runner.invoke(app, ["eval", "captions", "--refs", str(bad), "--preds", str(paths["plain_preds"])],
                      catch_exceptions=False)
    with pytest.raises(MetricInputError, match="unknown metric 'bleu5'"):
        runner.invoke(app, ["eval", "captions", "--refs", str(paths["plain_refs"]), "--preds",
                            str(paths["plain_preds"]), "--metrics", "bleu5"], catch_exceptions=False)


def test_wer_lines_and_json(tmp_path, captions):
    jiwer = pytest.importorskip("jiwer")
    refs, cands = captions
    ids = list(refs)
    ref_text = [refs[i][0] for i in ids]
    rng = np.random.RandomState(3)
    hyp_text = [" ".join(w for w in cands[i].split() if rng.rand() > 0.1) for i in ids]  # real, different wording
    (tmp_path / "refs.txt").write_text("\n".join(ref_text) + "\n", encoding="utf-8")
    (tmp_path / "hyps.txt").write_text("\n".join(hyp_text) + "\n", encoding="utf-8")
    got = _run("wer", "--refs", str(tmp_path / "refs.txt"), "--hyps", str(tmp_path / "hyps.txt"))
    assert got["n_utterances"] == len(ids)
    assert abs(got["wer"] - jiwer.wer(ref_text, hyp_text)) < 1e-12
    assert abs(got["cer"] - jiwer.cer(ref_text, hyp_text)) < 1e-12
    o = jiwer.process_words(ref_text, hyp_text)
    assert [got["words"][k] for k in ("substitutions", "deletions", "insertions", "hits")] == \
        [o.substitutions, o.deletions, o.insertions, o.hits]
    # JSON objects pair by id, whatever their order; JSON lists pair by position.
    (tmp_path / "refs.json").write_text(json.dumps({str(i): t for i, t in zip(ids, ref_text)}))
    (tmp_path / "hyps.json").write_text(json.dumps({str(i): t for i, t in reversed(list(zip(ids, hyp_text)))}))
    assert _run("wer", "--refs", str(tmp_path / "refs.json"), "--hyps", str(tmp_path / "hyps.json"))["wer"] == got["wer"]
    (tmp_path / "hyps_list.json").write_text(json.dumps(hyp_text))
    (tmp_path / "refs_list.json").write_text(json.dumps(ref_text))
    listed = _run("wer", "--refs", str(tmp_path / "refs_list.json"), "--hyps", str(tmp_path / "hyps_list.json"),
                  "--normalize", "lower_punct")
    lp = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveWhiteSpace(replace_by_space=True),
                        jiwer.RemoveMultipleSpaces(), jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])
    assert abs(listed["wer"] - jiwer.wer(ref_text, hyp_text, reference_transform=lp, hypothesis_transform=lp)) < 1e-12
    # Unpaired input names what is missing.
    (tmp_path / "short.txt").write_text("one line\n")
    with pytest.raises(MetricInputError, match=f"{len(ids)} reference utterances but 1 hypotheses"):
        runner.invoke(app, ["eval", "wer", "--refs", str(tmp_path / "refs.txt"), "--hyps", str(tmp_path / "short.txt")],
                      catch_exceptions=False)
    (tmp_path / "partial.json").write_text(json.dumps({str(ids[0]): "x"}))
    with pytest.raises(MetricInputError, match=f"id '{ids[1]}' is missing from --hyps"):
        runner.invoke(app, ["eval", "wer", "--refs", str(tmp_path / "refs.json"), "--hyps",
                            str(tmp_path / "partial.json")], catch_exceptions=False)
