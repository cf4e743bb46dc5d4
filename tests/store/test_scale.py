"""`python tools/bench.py scale` (tools/benchmarks/scale.py) end to end at a tiny size, and its numbers add up.

Tiny: 5,000 synthetic rows (from the bundled sample relabelled to all 340 classes), 300 test rows, validation
capped at 1 drawing a class. Training is the one stage that cannot run as the benchmark runs it: its time
budget (`--minutes`) lets the recipe plan at least 4 epochs and time probes, minutes on a CPU, so the test
trains without a budget for one epoch of 2 drawings a class at 32 px, without EMA and flip TTA (`--minutes 0
--train-set ...`); the model stays near chance, which is all the later stages need. The loader is timed for
0.5 s a size. Not yet timed on a quiet machine (the stages' own work is seconds; ten Python start-ups with
torch add ~30 s); 15 minutes at `nice -n 19` next to two un-niced training runs on 2 cores.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT
from helpers import relabel_to_340

ROWS, TEST_ROWS, VAL_CAP = 5_000, 300, 1
STAGES = ["synthesize", "prepare", "first_batch", "loader", "train", "predict", "ensemble", "submit", "page",
          "report"]
COMMON = {"bench", "stage", "ok", "rows", "seconds", "peak_rss_mb", "peak_anon_mb", "processes", "disk_mb"}
TINY_TRAINING = ["train.epochs=1", "data.per_class=2", "train.adapt=false", "data.num_workers=0", "data.img_size=32",
                 "train.batch_size=64", "train.ema=false", "val.tta=none"]


@pytest.fixture(scope="module")
def lines(tmp_path_factory, sample_dir) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("scale")
    src = relabel_to_340(sample_dir, tmp / "src")
    work = tmp / "work"
    cmd = [sys.executable, str(ROOT / "tools/bench.py"), "scale", "--rows", "5k", "--test-rows", str(TEST_ROWS),
           "--from", str(src), "--work", str(work), "--minutes", "0", "--val-per-class", str(VAL_CAP),
           "--loader-seconds", "0.5", "--device", "cpu", "--train-set", *TINY_TRAINING]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: a timeout ends its stages too
    try:
        out, err = proc.communicate(timeout=1700)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, err[-3000:]
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert not work.exists(), "the work folder must be removed without --keep"
    by_stage = {r["stage"]: r for r in rows}
    assert len(by_stage) == len(rows), "one line per stage"
    return by_stage


def test_every_stage_ran_once_and_reports_time_memory_and_disk(lines):
    failed = {s: r.get("error", "")[-800:] for s, r in lines.items() if not r["ok"]}
    assert not failed, failed
    assert list(lines) == STAGES
    for stage, r in lines.items():
        assert COMMON <= set(r), (stage, COMMON - set(r))
        assert r["bench"] == "scale" and r["rows"] == ROWS
        assert r["seconds"] > 0, stage
        # a Python process with numpy (and torch for most) holds tens of MB; the anonymous part is within RSS
        assert 20 < r["peak_rss_mb"] < 8000 and 0 < r["peak_anon_mb"] <= r["peak_rss_mb"], (stage, r)
        assert r["processes"] >= 1, stage
    for stage in ("synthesize", "prepare", "train", "predict", "ensemble", "report"):
        assert lines[stage]["disk_mb"] > 0, stage


def test_rows_add_up_from_synthesis_to_the_store(lines):
    syn, prep, first = lines["synthesize"], lines["prepare"], lines["first_batch"]
    assert syn["test_rows"] == TEST_ROWS and syn["rows_per_s"] > 0
    assert prep["rows_read"] == ROWS
    assert prep["kept"] + prep["rejected"] + prep["duplicates"] + prep["filtered"] == ROWS
    assert prep["duplicates"] == 0 and prep["filtered"] == 0  # synthetic key_ids never repeat; all 340 classes
    assert prep["skipped_files"] == 2  # test_simplified.csv (no word) and test_labels.csv, each with a note
    assert first["drawings"] == prep["kept"] and first["classes"] == 340
    assert 0 < first["val"] <= 340 * VAL_CAP and first["train"] + first["val"] <= prep["kept"]
    assert first["batch"] == 64 and 0 < first["open_split_s"] <= first["first_batch_s"]
    loader = lines["loader"]
    assert loader["images_64"] >= 3 * 256 and loader["images_128"] >= 3 * 256
    assert loader["images_per_s_64"] > 0 and loader["images_per_s_128"] > 0


def test_training_and_prediction_cover_every_class_and_test_row(lines):
    train, pred, ens = lines["train"], lines["predict"], lines["ensemble"]
    first = lines["first_batch"]
    assert train["n_classes"] == 340 and train["epochs_run"] == 1
    assert (train["n_train"], train["n_val"]) == (first["train"], first["val"])
    assert train["images_seen"] >= 340 * 2 and 0 <= train["val/map3"] <= 1
    assert pred["test_rows"] == TEST_ROWS and 0 <= pred["map3"] <= 1 and pred["rows_per_s"] > 0
    assert ens["members"] == 2 and ens["test_rows"] == TEST_ROWS and ens["val_rows"] == train["n_val"]
    assert ens["member_map3"][0] == ens["member_map3"][1] == ens["blend_map3"]  # the run and its copy


def test_the_submission_has_every_test_key_id_exactly_once(lines):
    sub = lines["submit"]
    assert sub["test_key_ids"] == TEST_ROWS and sub["submission_rows"] == TEST_ROWS
    assert sub["key_ids_missing"] == sub["key_ids_repeated"] == sub["key_ids_unknown"] == 0


def test_page_and_report_read_the_run_and_the_store(lines):
    page, train = lines["page"], lines["train"]
    assert page["runs_found"] == 1 and page["guess_classes"] == 340
    assert 0 < page["mistakes"] <= train["n_val"] and page["shown"] == min(12, page["mistakes"])
    assert lines["report"]["figures"] >= 3
