"""Official-format writers and readers of the vision-language benchmarks: every file written reads back into
the same records and has the keys, separators and header rows of the released files."""

from __future__ import annotations

import csv
import json
import pickle
import struct

import pytest

from xmodal.data.benchmarks import (
    audiocaps,
    charades_sta,
    clotho,
    hc_stvg,
    karpathy,
    msrvtt,
    refcoco,
    snli_ve,
    vidstg,
)
from xmodal.errors import CorruptFileError, DataError

REFER_REF_KEYS = {"ref_id", "ann_id", "category_id", "image_id", "file_name", "split", "sent_ids", "sentences"}
REFER_SENT_KEYS = {"raw", "sent", "sent_id", "tokens"}


def _refs() -> list[refcoco.RefRecord]:
    s = [refcoco.RefSentence(10, "man on the left", "Man on the left", ["man", "on", "the", "left"]),
         refcoco.RefSentence(11, "left guy", "left guy.", ["left", "guy"])]
    return [refcoco.RefRecord(1, 100, 7, 1, "COCO_train2014_000000000007_100.jpg", "testA", s),
            refcoco.RefRecord(2, 101, 7, 3, "COCO_train2014_000000000007_101.jpg", "testB",
                              [refcoco.RefSentence(12, "cup", "cup", ["cup"])]),
            refcoco.RefRecord(3, 102, 8, 1, "COCO_train2014_000000000008_102.jpg", "testAB", []),
            refcoco.RefRecord(4, 103, 8, 1, "COCO_train2014_000000000008_103.jpg", "val", [])]


# Python 2 wrote the released pickles: byte strings ('S' in protocol 0, 'U' in protocol 2). These emitters
# produce such files without Python 3's pickler, so the reader is checked on the encoding it will really meet.
def _py2_proto0(obj) -> bytes:
    if isinstance(obj, list):
        return b"(l" + b"".join(_py2_proto0(x) + b"a" for x in obj)
    if isinstance(obj, dict):
        return b"(d" + b"".join(_py2_proto0(k) + _py2_proto0(v) + b"s" for k, v in obj.items())
    if isinstance(obj, str):
        return b"S'" + obj.encode().replace(b"'", b"\\'") + b"'\n"
    if isinstance(obj, int):
        return b"I" + str(obj).encode() + b"\n"
    raise TypeError(obj)


def _py2_proto2(obj) -> bytes:
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_proto2(x) for x in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2_proto2(k) + _py2_proto2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, str):
        data = obj.encode()
        return b"U" + bytes([len(data)]) + data
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    raise TypeError(obj)


def _as_refer_dicts(refs):
    return [{"ref_id": r.ref_id, "ann_id": r.ann_id, "category_id": r.category_id, "image_id": r.image_id,
             "file_name": r.file_name, "split": r.split, "sent_ids": r.sent_ids,
             "sentences": [{"raw": s.raw, "sent": s.sent, "sent_id": s.sent_id, "tokens": s.tokens}
                           for s in r.sentences]} for r in refs]


@pytest.mark.parametrize("protocol", [0, 2])
def test_refs_pickle_round_trip_with_refer_keys(tmp_path, protocol):
    path = tmp_path / "refs(unc).p"
    refcoco.write_refs(path, _refs(), protocol=protocol)
    assert refcoco.read_refs(path) == _refs()
    raw = pickle.loads(path.read_bytes())  # what REFER does with the file
    assert all(set(r) == REFER_REF_KEYS for r in raw)
    assert all(set(s) == REFER_SENT_KEYS for r in raw for s in r["sentences"])
    if protocol == 2:
        assert path.read_bytes()[:2] == b"\x80\x02"
    else:
        assert path.read_bytes()[:1] != b"\x80"


@pytest.mark.parametrize("emit", [lambda o: _py2_proto0(o) + b".", lambda o: b"\x80\x02" + _py2_proto2(o) + b"."])
def test_refs_written_by_python2_read(tmp_path, emit):
    path = tmp_path / "refs(umd).p"
    path.write_bytes(emit(_as_refer_dicts(_refs())))
    assert refcoco.read_refs(path) == _refs()


def test_refs_unpickler_refuses_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Evil()], protocol=2))
    with pytest.raises(CorruptFileError, match=r"refs\(unc\).p: refuses to load the global .*print"):
        refcoco.read_refs(path)


def test_refs_missing_key_names_file_and_record(tmp_path):
    bad = _as_refer_dicts(_refs())
    del bad[1]["ann_id"]
    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"refs.p: ref #1: missing field 'ann_id'"):
        refcoco.read_refs(path)
    path.write_bytes(b"\x80\x02]q\x00(")
    with pytest.raises(CorruptFileError, match="refs.p"):
        refcoco.read_refs(path)


def test_select_split_follows_refer():
    refs = _refs()
    assert [r.ref_id for r in refcoco.select_split(refs, "testA")] == [1, 3]  # testAB counts as testA
    assert [r.ref_id for r in refcoco.select_split(refs, "testB")] == [2, 3]
    assert [r.ref_id for r in refcoco.select_split(refs, "test")] == [1, 2, 3]
    assert [r.ref_id for r in refcoco.select_split(refs, "val")] == [4]
    with pytest.raises(DataError):
        refcoco.select_split(refs, "testZ")


def test_instances_round_trip(tmp_path):
    inst = refcoco.CocoInstances(
        [refcoco.CocoImage(7, "COCO_train2014_000000000007.jpg", 640, 480)],
        [refcoco.CocoAnnotation(100, 7, 1, (10.5, 20.0, 30.0, 40.25), 1221.0, 0, [[10.5, 20.0, 40.5, 20.0, 40.5, 60.25]])],
        [refcoco.CocoCategory(1, "person", "person")])
    path = tmp_path / "instances.json"
    refcoco.write_instances(path, inst)
    assert refcoco.read_instances(path) == inst
    raw = json.loads(path.read_text())
    assert {"images", "annotations", "categories"} <= set(raw)
    assert raw["annotations"][0]["bbox"] == [10.5, 20.0, 30.0, 40.25]
    raw["annotations"][0]["bbox"] = [1, 2, 3]
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"annotations\[0\]: bbox"):
        refcoco.read_instances(path)


def test_charades_sta_lines(tmp_path):
    qs = [charades_sta.MomentQuery("AO8RW", 0.0, 6.9, "a person is putting a book on a shelf."),
          charades_sta.MomentQuery("3MSZA", 24.3, 30.4, "person turn a light on.")]
    path = tmp_path / "charades_sta_test.txt"
    charades_sta.write_charades_sta(path, qs)
    assert path.read_text() == ("AO8RW 0.0 6.9##a person is putting a book on a shelf.\n"
                                "3MSZA 24.3 30.4##person turn a light on.\n")
    assert charades_sta.read_charades_sta(path) == qs
    path.write_text("AO8RW 0.0 6.9##ok\nAO8RW 0.0##missing end\n")
    with pytest.raises(DataError, match=r"charades_sta_test.txt: line 2"):
        charades_sta.read_charades_sta(path)
    path.write_text("AO8RW 0.0 x6##bad number\n")
    with pytest.raises(DataError, match="line 1: end 'x6'"):
        charades_sta.read_charades_sta(path)


def test_activitynet_captions_round_trip(tmp_path):
    qs = [charades_sta.MomentQuery("v_QOlSCBRmfWY", 0.83, 19.86, "A young woman is seen.", 82.73),
          charades_sta.MomentQuery("v_QOlSCBRmfWY", 17.37, 60.81, "She dances.", 82.73)]
    path = tmp_path / "val_1.json"
    charades_sta.write_activitynet_captions(path, qs)
    assert json.loads(path.read_text()) == {"v_QOlSCBRmfWY": {"duration": 82.73,
                                                              "timestamps": [[0.83, 19.86], [17.37, 60.81]],
                                                              "sentences": ["A young woman is seen.", "She dances."]}}
    assert charades_sta.read_activitynet_captions(path) == qs


def test_snli_ve_jsonl(tmp_path):
    pairs = [snli_ve.EntailmentPair("2248275918.jpg#0r1n", "2248275918.jpg", "Two dogs run.", "neutral",
                                    "Two dogs play.", "2248275918.jpg#0", ["neutral", "neutral", "entailment"]),
             snli_ve.EntailmentPair("2248275918.jpg#0r1e", "2248275918.jpg", "Animals outside.", "entailment")]
    path = tmp_path / "snli_ve_test.jsonl"
    snli_ve.write_snli_ve(path, pairs)
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    assert list(first) == sorted(first) and next(iter(first)) == "Flikr30kID"
    assert {"Flikr30kID", "sentence2", "gold_label", "pairID", "sentence1", "annotator_labels"} <= set(first)
    back = snli_ve.read_snli_ve(path)
    assert back[0] == pairs[0]
    assert back[1].annotator_labels == ["entailment"] and back[1].hypothesis == "Animals outside."
    path.write_text(lines[0] + "\n" + lines[1].replace('"entailment"', '"-"') + "\n")
    with pytest.raises(DataError, match="snli_ve_test.jsonl: line 2: gold_label '-'"):
        snli_ve.read_snli_ve(path)
    path.write_text(lines[0] + "\n{broken\n")
    with pytest.raises(CorruptFileError, match="line 2"):
        snli_ve.read_snli_ve(path)


@pytest.mark.parametrize("version", [1, 2])
def test_hc_stvg_layouts(tmp_path, version):
    videos = [hc_stvg.HCSTVGVideo("50_TM5MPJIq1Is.mp4", 500, 640, 360, 120, 4.8, 6.0, "The man in black sits.",
                                  [[10, 20, 50, 80], [11, 21, 50, 80], [12.5, 22, 50, 80]])]
    path = tmp_path / "test.json"
    hc_stvg.write_hc_stvg(path, videos, version=version)
    raw = json.loads(path.read_text())["50_TM5MPJIq1Is.mp4"]
    if version == 1:
        assert {"img_num", "width", "height", "st_frame", "st_time", "ed_time", "bbox", "caption"} == set(raw)
    else:
        assert {"img_num", "img_size", "st_frame", "st_time", "ed_time", "bbox", "English"} == set(raw)
        assert raw["img_size"] == [360, 640]  # [height, width], as preproc_hcstvgv2.py reads it
    back = hc_stvg.read_hc_stvg(path)
    assert back == videos and back[0].tube_end_frame == 123


def test_duplicate_json_keys_are_errors(tmp_path):
    path = tmp_path / "test.json"
    rec = '{"img_num": 100, "width": 8, "height": 8, "st_frame": 0, "st_time": 0, "ed_time": 1, ' \
          '"bbox": [[0, 0, 1, 1]], "caption": "x"}'
    path.write_text('{"a.mp4": ' + rec + ', "a.mp4": ' + rec + '}')
    with pytest.raises(DataError, match=r"test.json: line 1: duplicate key 'a.mp4'"):
        hc_stvg.read_hc_stvg(path)


def test_hc_stvg_tube_outside_clip(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"a.mp4": {"img_num": 100, "width": 8, "height": 8, "st_frame": 99, "st_time": 0,
                                          "ed_time": 1, "bbox": [[0, 0, 1, 1]] * 2, "caption": "x"}}))
    with pytest.raises(DataError, match=r"test.json: a.mp4: the tube \[99, 101\)"):
        hc_stvg.read_hc_stvg(path)


def test_vidstg_round_trip(tmp_path):
    video = vidstg.VidSTGVideo("2401075277", 300, 29.97, 640, 480, (0, 300), (30, 90), {0: "adult", 1: "dog"},
                               [vidstg.VidSTGSentence(0, "adult", "who is walking the dog?")],
                               [vidstg.VidSTGSentence(0, "adult", "an adult walks a dog."),
                                vidstg.VidSTGSentence(1, "dog", "a dog follows an adult.")])
    path = tmp_path / "test_annotations.json"
    vidstg.write_vidstg(path, [video])
    assert vidstg.read_vidstg(path) == [video]
    queries = vidstg.vidstg_queries([video, video])
    assert [(q.index, q.qtype) for q in queries[:4]] == [(0, "interrogative"), (1, "declarative"),
                                                          (2, "declarative"), (3, "interrogative")]
    vidor = vidstg.VidORVideo("2401075277", "1025/2401075277.mp4", 300, 29.97, 640, 480, {0: "adult", 1: "dog"},
                              {0: {30: (1.0, 2.0, 50.0, 60.0), 31: (2.0, 3.0, 51.0, 61.0)}, 1: {5: (0.0, 0.0, 9.0, 9.0)}})
    written = vidstg.write_vidor(tmp_path / "vidor" / "validation", vidor)
    assert written == tmp_path / "vidor" / "validation" / "1025" / "2401075277.json"
    raw = json.loads(written.read_text())
    assert raw["trajectories"][30] == [{"tid": 0, "bbox": {"xmin": 1.0, "ymin": 2.0, "xmax": 50.0, "ymax": 60.0},
                                        "generated": 0, "tracker": "none"}]
    assert vidstg.read_vidor_folder(tmp_path / "vidor") == {"2401075277": vidor}


def test_karpathy_round_trip(tmp_path):
    coco = karpathy.KarpathyDataset("coco", [
        karpathy.KarpathyImage(0, "COCO_val2014_000000391895.jpg", "test",
                               [karpathy.KarpathySentence(770337, "A man with a red helmet.", ["a", "man"])],
                               "val2014", 391895),
        karpathy.KarpathyImage(1, "COCO_val2014_000000522418.jpg", "restval", [], "val2014", 522418)])
    path = tmp_path / "dataset_coco.json"
    karpathy.write_karpathy(path, coco)
    raw = json.loads(path.read_text())
    assert set(raw) == {"images", "dataset"}
    assert set(raw["images"][0]) == {"filepath", "sentids", "filename", "imgid", "split", "sentences", "cocoid"}
    assert set(raw["images"][0]["sentences"][0]) == {"tokens", "raw", "imgid", "sentid"}
    back = karpathy.read_karpathy(path)
    assert back == coco and [im.imgid for im in back.split("test")] == [0]
    flickr = karpathy.KarpathyDataset("flickr30k", [karpathy.KarpathyImage(
        0, "1000092795.jpg", "train", [karpathy.KarpathySentence(0, "Two young guys.", ["two", "young", "guys"])])])
    karpathy.write_karpathy(path, flickr)
    assert set(json.loads(path.read_text())["images"][0]) == {"sentids", "filename", "imgid", "split", "sentences"}
    assert karpathy.read_karpathy(path) == flickr


def test_msrvtt_files(tmp_path):
    data = msrvtt.MsrvttData([msrvtt.MsrvttVideo("video0", 0, "train", 9, "https://youtu.be/x", 137.72, 149.44)],
                             [msrvtt.MsrvttSentence(0, "video0", "a car is shown"),
                              msrvtt.MsrvttSentence(1, "video0", "a man drives, fast")])
    path = tmp_path / "MSRVTT_data.json"
    msrvtt.write_msrvtt_data(path, data)
    assert set(json.loads(path.read_text())["videos"][0]) == {"category", "url", "video_id", "start time",
                                                              "end time", "split", "id"}
    assert msrvtt.read_msrvtt_data(path) == data
    pairs = [msrvtt.Msrvtt1kAPair("ret0", "msr9770", "video9770", "a person is connecting something, to system")]
    test_csv = tmp_path / "MSRVTT_JSFUSION_test.csv"
    msrvtt.write_msrvtt_1ka(test_csv, pairs)
    assert test_csv.read_text().splitlines()[0] == "key,vid_key,video_id,sentence"
    assert msrvtt.read_msrvtt_1ka(test_csv) == pairs
    train_csv = tmp_path / "MSRVTT_train.9k.csv"
    msrvtt.write_msrvtt_train_list(train_csv, ["video0", "video1"])
    assert train_csv.read_text() == "video_id\nvideo0\nvideo1\n"
    assert msrvtt.read_msrvtt_train_list(train_csv) == ["video0", "video1"]
    test_csv.write_text("key,video_id,sentence\nret0,video1,x\n")
    with pytest.raises(DataError, match="MSRVTT_JSFUSION_test.csv: line 1: expected the header"):
        msrvtt.read_msrvtt_1ka(test_csv)


def test_audiocaps_and_clotho_csv(tmp_path):
    caps = [audiocaps.AudioCapsCaption(97151, "vfY_TJq7n_U", 130, "Rustling occurs, ducks quack"),
            audiocaps.AudioCapsCaption(97152, "vfY_TJq7n_U", 130, "Ducks quack"),
            audiocaps.AudioCapsCaption(108945, "tdWhHV3X25Q", 60, 'A "man" speaks')]
    path = tmp_path / "test.csv"
    audiocaps.write_audiocaps(path, caps)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["audiocap_id", "youtube_id", "start_time", "caption"]
    assert rows[1] == ["97151", "vfY_TJq7n_U", "130", "Rustling occurs, ducks quack"]
    assert audiocaps.read_audiocaps(path) == caps
    assert [(k, len(v)) for k, v in audiocaps.audiocaps_clips(caps)] == [(("vfY_TJq7n_U", 130), 2),
                                                                         (("tdWhHV3X25Q", 60), 1)]
    path.write_text("audiocap_id,youtube_id,start_time,caption\n1,a,ten,x\n")
    with pytest.raises(DataError, match="test.csv: line 2: start_time 'ten'"):
        audiocaps.read_audiocaps(path)

    clips = [clotho.ClothoClip("Santa Motor.wav", [f"caption, number {i}" for i in range(5)])]
    cpath = tmp_path / "clotho_captions_evaluation.csv"
    clotho.write_clotho(cpath, clips)
    assert cpath.read_text().splitlines()[0] == "file_name,caption_1,caption_2,caption_3,caption_4,caption_5"
    assert clotho.read_clotho(cpath) == clips
    cpath.write_text("file_name,caption_1,caption_2,caption_3,caption_4,caption_5\na.wav,1,2,3,4\n")
    with pytest.raises(DataError, match="line 2: expected 6 fields, got 5"):
        clotho.read_clotho(cpath)


def test_hc_stvg_video_paths(tmp_path):
    """Clips one folder down under video/, keyed by the file name without its extension, as TubeDETR's
    preprocessing maps them; a name twice and a missing folder are errors naming the folder."""
    (tmp_path / "video" / "part1").mkdir(parents=True)
    (tmp_path / "video" / "part2").mkdir()
    (tmp_path / "video" / "part1" / "50_TM5MPJIq1Is.mp4").write_bytes(b"")
    (tmp_path / "video" / "part2" / "51_abc.mp4").write_bytes(b"")
    (tmp_path / "video" / "loose.mp4").write_bytes(b"")  # not one folder down: the preprocessing skips it too
    paths = hc_stvg.video_paths(tmp_path / "video")
    assert paths == {"50_TM5MPJIq1Is": tmp_path / "video" / "part1" / "50_TM5MPJIq1Is.mp4",
                     "51_abc": tmp_path / "video" / "part2" / "51_abc.mp4"}
    (tmp_path / "video" / "part2" / "50_TM5MPJIq1Is.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="two clips named 50_TM5MPJIq1Is"):
        hc_stvg.video_paths(tmp_path / "video")
    with pytest.raises(DataError, match="nothing"):
        hc_stvg.video_paths(tmp_path / "nothing")
