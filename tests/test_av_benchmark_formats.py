"""Official-format writers and readers of the audio-visual benchmarks: write -> read gives the same records, and
the files have exactly the fields, separators and header rows the reference loaders read.

The layouts checked here are those of the official files (AVE-ECCV18 ``data/Annotations.txt``, AVVP-ECCV20
``data/AVVP_*.csv``, LVS ``metadata/vggss.json``, MUSIC-AVQA ``data/json/avqa-*.json``). During development the
readers were also run on those real files: 4,143 AVE lines (one ``0&0``), 4,131 audio and 2,495 visual AVVP rows
(with ``9\\t9``, ``9\\t0`` and duplicate rows), 10,000 weak training labels, and all 5,158 VGG-SS entries, which
``write_vggss`` writes back byte for byte. ``ave_one_hot`` on the real Annotations.txt equals the official
``labels_closs.h5`` event masks on all 4,143 clips, and ``AVE_CATEGORIES``' order the argmax of the official
``mil_labels.h5``.
"""

from __future__ import annotations

import ast
import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from xmodal.data.benchmarks.ave import (
    AVE_CATEGORIES,
    AVE_CLASSES,
    AVE_HEADER,
    AVEAnnotation,
    ave_one_hot,
    ave_segment_labels,
    read_ave,
    read_ave_features,
    read_ave_order,
    write_ave,
)
from xmodal.data.benchmarks.avvp import (
    AVVP_CLASSES,
    AVVPEvent,
    AVVPWeakLabel,
    events_from_grid,
    rasterize,
    read_avvp_classes,
    read_avvp_events,
    read_avvp_features,
    read_avvp_weak,
    write_avvp_classes,
    write_avvp_events,
    write_avvp_weak,
)
from xmodal.data.benchmarks.flickr_soundnet import (
    FlickrAnnotation,
    FlickrBox,
    read_flickr_dir,
    read_flickr_xml,
    write_flickr_dir,
)
from xmodal.data.benchmarks.music_avqa import AVQARecord, read_avqa, write_avqa
from xmodal.data.benchmarks.vggss import (
    VGGSSAnnotation,
    read_test_list,
    read_vggss,
    write_test_list,
    write_vggss,
)
from xmodal.errors import DataError

# ------------------------------------------------------------------------------------------------------ AVE

AVE_RECORDS = [
    AVEAnnotation("Church bell", "MH3m4AwEcRY", "good", 6, 8),
    AVEAnnotation("Baby cry, infant cry", "-J2WJaG1Dd4", "good", 0, 10),
    AVEAnnotation("Frying (food)", "VWi2ENBuTbw", "good", 0, 0),
]


@pytest.mark.parametrize("header", [True, False])
def test_ave_round_trip_and_layout(tmp_path, header):
    path = tmp_path / "testSet.txt"
    write_ave(path, AVE_RECORDS, header=header)
    lines = path.read_text().splitlines()
    assert lines[0] == AVE_HEADER if header else lines[0] == "Church bell&MH3m4AwEcRY&good&6&8"
    assert lines[-1] == "Frying (food)&VWi2ENBuTbw&good&0&0"
    assert all(len(line.split("&")) == 5 for line in lines)
    assert read_ave(path, unique=True) == AVE_RECORDS


def test_ave_segments_background_and_zero_span():
    labels = ave_segment_labels(AVE_RECORDS)
    assert labels["MH3m4AwEcRY"] == ["background"] * 6 + ["Church bell"] * 2 + ["background"] * 2
    assert labels["-J2WJaG1Dd4"] == ["Baby cry, infant cry"] * 10
    assert labels["VWi2ENBuTbw"] == ["background"] * 10


def test_ave_reads_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"Category&VideoID&Quality&StartTime&EndTime\r\nBark&x1&good&1&3\r\n\r\n")
    assert read_ave(path) == [AVEAnnotation("Bark", "x1", "good", 1, 3)]


@pytest.mark.parametrize("line, message", [
    ("Bark&x1&good&1", "5 '&'-separated fields"),
    ("Bark&x1&good&one&3", "StartTime must be an integer"),
    ("Bark&x1&good&4&3", "StartTime <= EndTime"),
    ("Bark&x1&good&0&11", "EndTime <= 10"),
])
def test_ave_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"Bark&x0&good&0&1\n{line}\n")
    with pytest.raises(DataError, match=message) as err:
        read_ave(path)
    assert f"{path}:2" in str(err.value)


def test_ave_duplicate_video_id(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("Bark&x1&good&0&1\nCat&x1&good&2&4\n")
    assert len(read_ave(path)) == 2  # the full Annotations.txt repeats ids
    with pytest.raises(DataError, match="repeats line 1") as err:
        read_ave(path, unique=True)
    assert f"{path}:2" in str(err.value)


def test_ave_one_hot_layout():
    hot = ave_one_hot(AVE_RECORDS)
    assert hot.shape == (3, 10, 29) and AVE_CLASSES[28] == "background" and len(AVE_CATEGORIES) == 28
    assert hot[0, :, AVE_CLASSES.index("Church bell")].tolist() == [0] * 6 + [1, 1, 0, 0]
    assert hot[2, :, 28].tolist() == [1] * 10 and (hot.sum(-1) == 1).all()


def test_ave_hdf5_features_and_order(tmp_path):
    h5py = pytest.importorskip("h5py")
    features = np.random.default_rng(0).random((3, 10, 128)).astype(np.float32)
    with h5py.File(tmp_path / "audio_feature.h5", "w") as f:
        f["avadataset"] = features
    with h5py.File(tmp_path / "test_order.h5", "w") as f:
        f["order"] = np.array([2, 0])
    assert np.array_equal(read_ave_features(tmp_path / "audio_feature.h5"), features)
    assert read_ave_order(tmp_path / "test_order.h5").tolist() == [2, 0]
    with pytest.raises(DataError, match="no dataset 'order'"):
        read_ave_order(tmp_path / "audio_feature.h5")
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5"):
        read_ave_features(tmp_path / "broken.h5")


# ------------------------------------------------------------------------------------------------------ AVVP

def test_avvp_event_file_round_trip_and_layout(tmp_path):
    rows = [AVVPEvent("KSRjje7GH44_60_70", 8, 10, "Blender"), AVVPEvent("CSWQ_HzQ_10_20", 9, 9, "Speech"),
            AVVPEvent("CSWQ_HzQ_10_20", 9, 0, "Frying_(food)")]
    path = tmp_path / "AVVP_eval_audio.csv"
    write_avvp_events(path, rows)
    text = path.read_text()
    assert text.splitlines()[0] == "filename\tonset\toffset\tevent_labels"
    assert text.splitlines()[1] == "KSRjje7GH44_60_70\t8\t10\tBlender"
    table = list(csv.reader(path.open(), delimiter="\t"))
    assert all(len(r) == 4 for r in table)
    assert read_avvp_events(path) == rows


def test_avvp_weak_file_round_trip_and_layout(tmp_path):
    rows = [AVVPWeakLabel("BjCEufrlXm4_20_30", ("Speech", "Dog")), AVVPWeakLabel("4YdbENYcIyE_23_33", ("Cat",))]
    path = tmp_path / "AVVP_train.csv"
    write_avvp_weak(path, rows)
    assert path.read_text() == "filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech,Dog\n4YdbENYcIyE_23_33\tCat\n"
    assert read_avvp_weak(path) == rows


def test_avvp_classes_file(tmp_path):
    write_avvp_classes(tmp_path / "classes.txt", ["duck", "violin"])
    assert read_avvp_classes(tmp_path / "classes.txt") == ("duck", "violin")
    path = tmp_path / "e.csv"
    write_avvp_events(path, [AVVPEvent("a_0_10", 0, 2, "duck")])
    assert read_avvp_events(path, classes=("duck", "violin"))[0].event_label == "duck"
    with pytest.raises(DataError, match="unknown class 'duck'"):
        read_avvp_events(path)


def test_avvp_rasterize_merges_and_ignores_empty_spans():
    events = [AVVPEvent("v1", 0, 3, "Speech"), AVVPEvent("v1", 2, 5, "Speech"),  # overlap merges
              AVVPEvent("v1", 5, 7, "Speech"),                                      # adjacent: one event
              AVVPEvent("v1", 9, 9, "Dog"), AVVPEvent("v1", 9, 0, "Dog"),           # onset >= offset: nothing
              AVVPEvent("v1", 8, 10, "Dog"), AVVPEvent("v1", 8, 10, "Dog"),         # duplicate
              AVVPEvent("elsewhere", 0, 10, "Cat")]
    grids = rasterize(events, ["v1", "empty"])
    assert set(grids) == {"v1", "empty"}
    speech, dog = AVVP_CLASSES.index("Speech"), AVVP_CLASSES.index("Dog")
    assert grids["v1"][speech].tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert grids["v1"][dog].tolist() == [0] * 8 + [1, 1]
    assert grids["v1"].sum() == 9 and grids["empty"].sum() == 0 and grids["v1"].shape == (25, 10)


def test_avvp_events_from_grid_inverts_rasterize(tmp_path):
    grid = np.zeros((25, 10), dtype=int)
    grid[0, [0, 1, 2, 5, 9]] = 1
    grid[24, :] = 1
    rows = events_from_grid("v_0_10", grid)
    assert rows == [AVVPEvent("v_0_10", 0, 3, "Speech"), AVVPEvent("v_0_10", 5, 6, "Speech"),
                    AVVPEvent("v_0_10", 9, 10, "Speech"), AVVPEvent("v_0_10", 0, 10, "Clapping")]
    write_avvp_events(tmp_path / "audio.csv", rows)
    assert np.array_equal(rasterize(read_avvp_events(tmp_path / "audio.csv"), ["v_0_10"])["v_0_10"], grid)
    with pytest.raises(DataError, match="0/1 grid"):
        events_from_grid("v", grid[:3])


def test_avvp_features(tmp_path):
    shapes = {"vggish": (10, 128), "res152": (80, 2048), "r2plus1d_18": (10, 512)}
    for folder, shape in shapes.items():
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "v_0_10.npy", np.ones(shape, dtype=np.float64))
    dirs = [tmp_path / f for f in shapes]
    feats = read_avvp_features("v_0_10", *dirs)
    assert {k: v.shape for k, v in feats.items()} == {"audio": (10, 128), "visual": (80, 2048), "motion": (10, 512)}
    assert feats["visual"].dtype == np.float32
    np.save(tmp_path / "res152" / "v_0_10.npy", np.ones((10, 2048)))
    with pytest.raises(DataError, match=r"res152/v_0_10.npy.*\(80, width\), officially \(80, 2048\)"):
        read_avvp_features("v_0_10", *dirs)
    np.save(tmp_path / "res152" / "v_0_10.npy", np.ones((80, 64)))  # another extractor's width is read
    assert read_avvp_features("v_0_10", *dirs)["visual"].shape == (80, 64)
    np.save(tmp_path / "vggish" / "v_0_10.npy", np.ones((10, 64)))  # VGGish's width is fixed
    with pytest.raises(DataError, match=r"vggish/v_0_10.npy.*\(10, 128\)"):
        read_avvp_features("v_0_10", *dirs)
    with pytest.raises(DataError, match="file not found"):
        read_avvp_features("missing", *dirs)


@pytest.mark.parametrize("content, message", [
    ("filename,onset,offset,event_labels\n", "header"),
    ("filename\tonset\toffset\tevent_labels\nv\t0\t3\n", "4 tab-separated fields"),
    ("filename\tonset\toffset\tevent_labels\nv\t0\t3.5\tDog\n", "offset must be an integer"),
    ("filename\tonset\toffset\tevent_labels\nv\t0\t11\tDog\n", "0..10"),
    ("filename\tonset\toffset\tevent_labels\nv\t0\t3\tdog\n", "unknown class 'dog'"),
])
def test_avvp_malformed(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_avvp_events(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------------------------------ VGG-SS

def test_vggss_round_trip_keeps_numbers_as_they_are(tmp_path):
    records = [VGGSSAnnotation("zpWuikVorYg_000032", "elk bugling", ((0.403125, 0.253125, 0.6, 0.75),)),
               VGGSSAnnotation("Db6Hjt0x28k_000056", "playing timbales",
                               ((0.384375, 0.859375, 0.696875, -2.8823037615171176e16), (0, 0.35625, 1, 0.98125)))]
    path = tmp_path / "vggss.json"
    write_vggss(path, records)
    raw = json.loads(path.read_text())
    assert list(raw[0]) == ["file", "class", "bbox"]
    assert raw[1]["bbox"][1] == [0, 0.35625, 1, 0.98125] and isinstance(raw[1]["bbox"][1][0], int)
    assert read_vggss(path) == records
    assert path.read_text().startswith('[{"file": "zpWuikVorYg_000032", "class": "elk bugling", "bbox": [[0.403125')


def test_vggss_malformed(tmp_path):
    path = tmp_path / "vggss.json"
    path.write_text('[{"file": "a", "class": "c", "bbox": [[0, 0, 1]]}]')
    with pytest.raises(DataError, match=r"\[0\].*4 numbers"):
        read_vggss(path)
    path.write_text('[{"file": "a", "bbox": []}]')
    with pytest.raises(DataError, match="keys file, class and bbox"):
        read_vggss(path)
    path.write_text("[{")
    with pytest.raises(DataError, match=r"vggss.json: line 1: invalid JSON"):
        read_vggss(path)


def test_lvs_test_lists(tmp_path):
    write_test_list(tmp_path / "vggss_test.csv", ["zpWuikVorYg_000032", "gEvCUcZ6w88_000030"])
    assert (tmp_path / "vggss_test.csv").read_text() == "zpWuikVorYg_000032\ngEvCUcZ6w88_000030\n"
    assert read_test_list(tmp_path / "vggss_test.csv") == ["zpWuikVorYg_000032", "gEvCUcZ6w88_000030"]
    (tmp_path / "flickr_test.csv").write_text("10000130166,202\n10007936344,0\n")
    assert read_test_list(tmp_path / "flickr_test.csv") == ["10000130166", "10007936344"]


# ------------------------------------------------------------------------------------------------------ Flickr

def test_flickr_xml_round_trip_and_layout(tmp_path):
    record = FlickrAnnotation("10000130166", (FlickrBox(50, 60, 150, 200, "1"), FlickrBox(40, 70, 160, 210, "2"),
                                              FlickrBox(0, 0, 256, 256, "3")))
    write_flickr_dir(tmp_path, [record])
    path = tmp_path / "10000130166.xml"
    root = ET.parse(path).getroot()
    grandchildren = [e for child in root for e in child]
    assert [e.tag for e in grandchildren] == ["bbox"] * 3  # the only grandchildren LVS accepts
    # LVS reads children 1..4 of each <bbox> as integers xmin, ymin, xmax, ymax (child 0 is skipped).
    assert [[int(c.text) for c in list(e)[1:]] for e in grandchildren] == [[50, 60, 150, 200], [40, 70, 160, 210],
                                                                           [0, 0, 256, 256]]
    assert read_flickr_xml(path) == record
    assert read_flickr_dir(tmp_path) == {"10000130166": record}


def test_flickr_rejects_what_lvs_cannot_read(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text("<annotation><size><width>256</width></size></annotation>")
    with pytest.raises(DataError, match="only <bbox>"):
        read_flickr_xml(path)
    path.write_text("<annotation><b><bbox><n>1</n><x>1.5</x><y>1</y><x>2</x><y>2</y></bbox></b></annotation>")
    with pytest.raises(DataError, match="must be an integer"):
        read_flickr_xml(path)
    path.write_text("<annotation><b>")
    with pytest.raises(DataError, match="not well-formed"):
        read_flickr_xml(path)


# ------------------------------------------------------------------------------------------------------ AVQA

def test_avqa_round_trip_and_string_encoded_fields(tmp_path):
    records = [AVQARecord("00000086", 28, ("Audio-Visual", "Existential"), "Is the <Object> in the video always "
                          "playing?", ("violin",), "no"),
               AVQARecord("00000086", 29, ("Audio", "Comparative"), "Is the <Object> louder than the <Object>?",
                          ("piano", "cello"), "yes", question_deleted=None)]
    path = tmp_path / "avqa-test.json"
    write_avqa(path, records)
    raw = json.loads(path.read_text())
    assert raw[0] == {"video_id": "00000086", "question_id": 28, "type": '["Audio-Visual", "Existential"]',
                      "question_content": "Is the <Object> in the video always playing?",
                      "templ_values": '["violin"]', "question_deleted": 0, "anser": "no"}
    assert ast.literal_eval(raw[1]["type"]) == ["Audio", "Comparative"] and "question_deleted" not in raw[1]
    assert read_avqa(path) == records
    # As dataloader_avst.py: the final '?' dropped, placeholders filled in order.
    assert records[1].question_tokens() == ["Is", "the", "piano", "louder", "than", "the", "cello"]


def test_avqa_malformed(tmp_path):
    path = tmp_path / "q.json"
    entry = {"video_id": "1", "question_id": 1, "type": "Audio", "question_content": "How many?",
             "templ_values": "[]", "anser": "two"}
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match=r"q.json\[0\].*type 'Audio' is not a literal list"):
        read_avqa(path)
    del entry["anser"]
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match="missing keys"):
        read_avqa(path)
    record = AVQARecord("1", 1, ("Audio", "Counting"), "How many <Object> and <Object>?", ("violin",), "two")
    with pytest.raises(DataError, match="more placeholders"):
        record.question_tokens()


