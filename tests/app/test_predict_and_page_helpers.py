"""Predict's reject handling, tie-stable top_k, the shared softmax, canvas paths, the
inference loader's class check, and the label-mode file stamps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest_app import outputs_copy, tiny_run  # noqa: F401  (fixtures)

from doodle import metrics, resources
from doodle.app import guesses as page
from doodle.app import labels as collect
from doodle.drawing.canvas import parse_canvas
from doodle.predict import ensemble
from doodle.predict.loaded_run import load_run
from doodle.runs.folder import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
KEY19 = "1234567890123456789"  # label mode's 19-digit key_ids (collect.KEY_ID_DIGITS)


# ---- predict: a folder given to --test reads its drawing files only ----------------------------------

def test_predict_folder_skips_labels_submissions_and_stores(tmp_path, caplog):
    """input/ as Kaggle's download leaves it: the test CSV is read; its labels, the sample submission and
    a prepared store's rejects.csv beside it are skipped (each logged), as prepare skips them."""
    from doodle.predict.loaded_run import input_files

    sample = ROOT / "input/sample"
    (tmp_path / "store").mkdir()
    (tmp_path / "store/store.json").write_text("{}")
    (tmp_path / "store/rejects.csv").write_text("file,line,reason,text\n")
    (tmp_path / "sample_submission.csv").write_text("key_id,word\n1,cat dog bear\n")
    for name in ("test_simplified.csv", "test_labels.csv"):
        (tmp_path / name).write_bytes((sample / name).read_bytes())
    (tmp_path / "my_labels.csv").write_bytes((sample / "test_labels.csv").read_bytes())
    with caplog.at_level("INFO", logger="predict"):
        assert input_files(tmp_path) == [tmp_path / "test_simplified.csv"]
    assert sorted(r.getMessage().split(":")[0] for r in caplog.records) == sorted(
        str(tmp_path / n) for n in ("my_labels.csv", "sample_submission.csv", "test_labels.csv"))
    with pytest.raises(FileNotFoundError, match="no .csv/.ndjson"):
        input_files(tmp_path / "store")
    (tmp_path / "test_simplified.csv").unlink()
    with pytest.raises(FileNotFoundError, match="only label, submission or review-decision files .my_labels.csv, sample_submission"):
        input_files(tmp_path)


def test_predict_never_reads_review_decisions_as_drawings(tmp_path, caplog):
    """--test pointed at a collected folder: its word files are read, `_decisions.ndjson` is skipped (logged);
    given on its own, it is refused with a one-line reason. Read as drawings, every decision would have been
    a rejected row "predicted" under its key_id."""
    from doodle.app.review import decide
    from doodle.drawing.batch import FileFormatError
    from doodle.predict.loaded_run import input_files
    from doodle.store import collected as coll

    raw = json.loads(next((ROOT / "input/sample/raw").glob("*.ndjson")).read_text().splitlines()[0])
    path = tmp_path / "bear.ndjson"
    rec = coll.append_record(path, raw | {"word": "bear", "key_id": str(10**18 + 1), "author": "ann"})
    coll.mark_folder(tmp_path)
    decide(tmp_path, int(rec["key_id"]), "bob", "accept")
    assert (tmp_path / coll.DECISIONS).read_text().count("\n") == 1
    with caplog.at_level("INFO", logger="predict"):
        assert input_files(tmp_path) == [path]
    assert any("_decisions.ndjson: skipped, review decisions" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileFormatError, match="_decisions.ndjson: review decisions of a collected folder"):
        input_files(tmp_path / coll.DECISIONS)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="review-decision files ._decisions.ndjson"):
        input_files(tmp_path)


# ---- predict: rejected rows with a usable key_id still get a (blank) row ------------------------------

def predict_rows(tmp_path: Path, test: Path) -> tuple[list[int], list[list[str]]]:
    from doodle.predict.recipe import read_inputs  # what src/predict.py reads its --test with

    batch = read_inputs([test], tmp_path / "rejects.csv")
    with open(tmp_path / "rejects.csv", newline="") as f:
        rejects = list(csv.reader(f))[1:]
    return batch.key_id.tolist(), rejects


def test_predict_keeps_19_digit_key_ids_and_skips_non_ascii_digits_csv(tmp_path):
    test = tmp_path / "test.csv"
    good = (ROOT / "input/sample/test_simplified.csv").read_text().splitlines()[:3]
    test.write_text("\n".join(good + [f'{KEY19},US,"[[[1, 2], [3]]]"', '²,US,"[[[1, 2], [3]]]"',
                                      '²,US,"[[[1, 2], [3, 4]]]"']) + "\n")
    keys, rejects = predict_rows(tmp_path, test)
    assert len(keys) == 3 and keys[-1] == int(KEY19)  # 2 good rows + the broken drawing with a 19-digit id
    assert sorted(r[3] for r in rejects) == ["bad_key_id", "bad_key_id", "length_mismatch"]


def test_predict_skips_a_non_ascii_digit_key_guessed_from_a_broken_ndjson_line(tmp_path):
    test = tmp_path / "test.ndjson"
    ok = {"word": "cat", "countrycode": "US", "recognized": True, "timestamp": "2017-01-01 00:00:00.0 UTC",
          "drawing": [[[1, 2], [3, 4]]]}
    lines = [{**ok, "key_id": "5"}, {**ok, "key_id": "²", "drawing": [[[1, 2], [3]]]},
             {**ok, "key_id": KEY19, "drawing": [[[1, 2], [3]]]}]
    test.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    keys, rejects = predict_rows(tmp_path, test)
    assert keys == [5, int(KEY19)]
    assert len(rejects) == 2


# ---- top_k: ties go to the lower index, fast enough ----------------------------------------------------

def test_top_k_ties_go_to_the_lower_index_like_a_stable_sort():
    rng = np.random.default_rng(0)
    assert metrics.top_k(np.array([[0.0, 0.0, 0.0, 0.0, 1.0]]), 3).tolist() == [[4, 0, 1]]
    for n_classes in (2, 3, 5, 10, 17, 340):
        for levels in (1, 2, 3, 20):
            x = rng.integers(0, levels, (300, n_classes)).astype(np.float16)
            x[rng.random(x.shape) < 0.05] = np.nan  # NaN ranks last, as in argsort
            for k in (1, 3):
                expect = np.argsort(-x, axis=1, kind="stable")[:, :k]
                assert np.array_equal(metrics.top_k(x, k), expect), (n_classes, levels, k)


def test_top_k_of_all_equal_float16_rows():
    x = np.zeros((1000, 340), np.float16)
    assert (metrics.top_k(x, 3) == [0, 1, 2]).all()


def test_page_top_k_is_the_metrics_top_k_with_names():
    probs = np.array([0.2, 0.3, 0.2, 0.3])
    assert page.top_guesses(probs, list("abcd"), 3) == [("b", 0.3), ("d", 0.3), ("a", 0.2)]
    assert page.top_guesses(probs, list("abcd"), 9)[-1] == ("c", 0.2)


# ---- one softmax -------------------------------------------------------------------------------------

def test_softmax_dtypes_and_sums():
    x = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float16)
    p32, p64 = metrics.softmax(x), metrics.softmax(x, np.float64)
    assert p32.dtype == np.float32 and p64.dtype == np.float64
    np.testing.assert_allclose(p64.sum(axis=1), 1.0)
    np.testing.assert_allclose(p32, p64, rtol=1e-5)
    assert ensemble.softmax is metrics.softmax
    np.testing.assert_allclose(metrics.softmax(x[0], np.float64), p64[0])  # one drawing: the last axis


def test_per_class_accuracy_is_nan_for_an_empty_class():
    probs = np.eye(3)[[0, 1, 1]]
    acc = metrics.per_class_accuracy(probs, np.array([0, 1, 0]), 4)
    assert acc[:2].tolist() == [0.5, 1.0] and np.isnan(acc[2:]).all()


# ---- canvas paths --------------------------------------------------------------------------------------

def test_canvas_paths_keep_fabric6_path_objects_only():
    from doodle.drawing.canvas import is_canvas_path

    stroke = [["M", 1, 2], ["L", 30, 40]]
    data = {"objects": [{"type": "Path", "path": stroke}, {"type": "rect"}, "junk", {"type": "path", "path": stroke}]}
    assert [is_canvas_path(o) for o in data["objects"]] == [True, False, False, True]
    assert parse_canvas(data).n_strokes == 2


# ---- inference -----------------------------------------------------------------------------------------

def test_load_run_refuses_a_checkpoint_for_other_classes(outputs_copy):  # noqa: F811
    fold = outputs_copy / "tiny" / "fold0"
    assert load_run(fold).classes
    cfg = yaml.safe_load((fold / "config.yaml").read_text())
    cfg["run"]["classes"] = list(reversed(cfg["run"]["classes"]))
    (fold / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match="trained on other classes"):
        load_run(fold)


@pytest.mark.parametrize("amp", ["fp16", "bf16", "auto"])
def test_a_run_trained_with_mixed_precision_predicts_on_cpu_in_full_precision(outputs_copy, amp):  # noqa: F811
    """A GPU run's train.amp (fp16 needs CUDA; CPU bf16 autocast is slow) does not follow it to a CPU."""
    fold = outputs_copy / "tiny" / "fold0"
    cfg = yaml.safe_load((fold / "config.yaml").read_text())
    cfg["train"]["amp"] = amp
    (fold / "config.yaml").write_text(yaml.safe_dump(cfg))
    lr = load_run(fold, torch.device("cpu"))
    assert lr.precision.dtype is None and lr.device.type == "cpu"


def test_an_image_run_predicts_in_channels_last_as_it_would_in_nchw(outputs_copy, sample_dir):  # noqa: F811
    """NHWC is ~1.4x faster on this CPU; the logits are the NCHW ones up to float rounding."""
    from doodle.drawing.flat import Drawings
    from doodle.predict.loaded_run import predict_drawings
    from doodle.store.kaggle_csv import read_csv

    lr = load_run(outputs_copy / "tiny" / "fold0", torch.device("cpu"))
    assert lr.channels_last and lr.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    b = next(read_csv(sample_dir / "train_simplified" / "bear.csv"))[0]
    d = Drawings(b.xy, b.t, b.stroke_len, b.n_strokes)
    fast = predict_drawings(lr, d)
    lr.model.to(memory_format=torch.contiguous_format)
    lr.channels_last = False
    assert np.allclose(fast, predict_drawings(lr, d), atol=1e-4)


# ---- label mode: counts re-read only when a file changes ---------------------------------------------------

def test_file_stamps_change_when_a_drawing_is_saved(tmp_path):
    from doodle.drawing.strokes import from_strokes

    words = resources.kaggle_classes()
    root = tmp_path / "collected"
    assert collect.file_stamps(root) == ()
    d = from_strokes([[[1.0, 5.0], [2.0, 6.0], [0.0, 10.0]]])
    collect.append_drawing(root, words, "bear", d, author="ann")
    first = collect.file_stamps(root)
    assert [name for name, _, _ in first] == ["_decisions.ndjson", "bear.ndjson"]
    collect.append_drawing(root, words, "bear", d, author="bob")
    second = collect.file_stamps(root)
    assert second != first and second[1][1] > first[1][1]
    with open(root / "_decisions.ndjson", "a") as f:  # a review decision changes them too
        f.write("{}\n")
    assert collect.file_stamps(root) != second
