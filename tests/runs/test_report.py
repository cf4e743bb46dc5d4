"""Reports and comparisons on a real (tiny) 2-fold run: files written, numbers that match the run's own
records, a store that has moved away, and one-line errors for folders that are not runs."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import command_module as load_tool
from helpers import prepare_sample, shrink

from doodle import cli
from doodle.metrics import map_at_k
from doodle.runs.folder import load_logits

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = {"curves", "reliability", "class_accuracy", "confusions", "quotas", "inputs", "channels"}


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    """outputs/demo with folds 0 and 1: the demo config shrunk to 32 px, 4 drawings per class, 2 epochs."""
    tmp = tmp_path_factory.mktemp("report")
    store = prepare_sample(tmp / "store")  # its own store beside the runs: a test finds it by that path
    train = load_tool(ROOT / "src/train.py")
    for fold in (0, 1):
        argv = ["--cfg", str(ROOT / "configs/demo.yaml"), "--fold", str(fold), "--out", str(tmp / "out"),
                "--no-progress", "--device", "cpu", *shrink(store, 2)]
        assert train.main(argv) == 0
    return tmp / "out/demo"


@pytest.fixture(scope="module")
def report(run, tmp_path_factory) -> Path:
    """A copy of the run with its report written by tools/report.py (into the run folder, the default)."""
    copy = tmp_path_factory.mktemp("reported") / "demo"
    shutil.copytree(run, copy)
    assert load_tool(ROOT / "tools/report.py").main([str(copy)]) == 0
    return copy


def table_after(markdown: str, heading: str) -> list[list[str]]:
    """Body rows of the first markdown table after `heading`."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    stop = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[start + 2 : stop]]


def test_report_writes_markdown_and_valid_pngs(report):
    md = (report / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {Path(link).stem for link in links} == FIGURES
    calib = md[md.index("## Calibration"):md.index("## Per-class accuracy")]
    assert "stored by training" in calib and "ECE before" in calib and "out-of-fold drawings: ECE" in calib
    for link in links:
        png = report / link
        assert png.is_file() and png.stat().st_size > 1000, link
        assert png.read_bytes()[:8] == PNG, link
    summary = table_after(md, "## Summary")
    assert [r[0] for r in summary] == ["0", "1", "mean", "OOF"]
    for row, fold in zip(summary, (0, 1), strict=False):
        s = json.loads((report / f"fold{fold}/summary.json").read_text())
        assert row[2] == f"{s['val/map3']:.4f}" and row[3] == f"{s['val/acc1']:.4f}"


def test_confusion_table_equals_a_hand_count(report):
    hand: Counter = Counter()
    totals: Counter = Counter()
    for fold in (0, 1):
        val = load_logits(report / f"fold{fold}/val_logits.npz")
        for row, t in zip(val["logits"], val["target"], strict=True):
            totals[val["classes"][t]] += 1
            if (p := int(np.argmax(row))) != t:
                hand[(val["classes"][t], val["classes"][p])] += 1
    rows = table_after((report / "report.md").read_text(), "## Most confused pairs")
    assert 0 < len(rows) <= 15
    counts = [int(r[2]) for r in rows]
    assert counts == sorted(hand.values(), reverse=True)[: len(rows)]
    for true, pred, count, share in rows:
        assert int(count) == hand[(true, pred)], (true, pred)
        assert share == f"{100 * int(count) / totals[true]:.1f}%"


def test_report_without_the_store_notes_it_and_still_succeeds(run, tmp_path):
    fold = tmp_path / "moved/fold0"
    shutil.copytree(run / "fold0", fold)
    cfg = fold / "config.yaml"
    store = str(run.parents[1] / "store")
    assert store in cfg.read_text()
    cfg.write_text(cfg.read_text().replace(store, str(tmp_path / "gone")))
    assert load_tool(ROOT / "tools/report.py").main([str(fold)]) == 0
    md = (fold / "report.md").read_text()
    assert "not available" in md and str(tmp_path / "gone") in md
    pngs = {p.stem for p in (fold / "report").glob("*.png")}
    assert pngs == {"curves", "reliability", "class_accuracy", "quotas"}
    assert "## Most confused pairs" in md  # the table needs logits only


def test_compare_lists_both_runs_with_their_map3(run, tmp_path, capsys):
    other = tmp_path / "other/fold0"
    shutil.copytree(run / "fold0", other)
    s = json.loads((other / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**s, "val/map3": 0.9, "val/acc1": 0.8}))
    compare = load_tool(ROOT / "tools/compare.py")
    out = tmp_path / "comparison.md"
    assert compare.main([str(run), str(other.parent), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in printed.splitlines()[2:4]]
    assert [r[0] for r in rows] == ["other", "demo"]  # best MAP@3 first
    maps = [json.loads((run / f"fold{k}/summary.json").read_text())["val/map3"] for k in (0, 1)]
    assert rows[0][3] == "0.9000" and rows[0][4] == ""
    assert rows[1][1] == "0,1" and rows[1][3] == f"{np.mean(maps):.4f}"
    vals = [load_logits(run / f"fold{k}/val_logits.npz") for k in (0, 1)]
    oof = map_at_k(np.concatenate([v["logits"] for v in vals]), np.concatenate([v["target"] for v in vals]))
    assert rows[1][4] == f"{oof:.4f}"
    assert compare.main([str(run), str(other.parent), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in data] == ["other", "demo"]
    assert data[0]["map3"] == 0.9 and data[1]["map3"] == pytest.approx(np.mean(maps))


@pytest.mark.parametrize("tool", ["report", "compare"])
def test_a_folder_that_is_not_a_run_is_a_one_line_error(tool, tmp_path, capsys):
    main = load_tool(ROOT / f"tools/{tool}.py").main
    (tmp_path / "empty").mkdir()
    for path, message in ((tmp_path / "empty", "is not a run"), (tmp_path / "nowhere", "not found")):
        assert cli.run(main, [str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and str(path) in err[-1] and message in err[-1], err


def test_a_killed_fold_is_summarised_from_metrics_as_training_summarised_it(run, tmp_path):
    """A fold without summary.json (killed) gets its numbers rebuilt from metrics.csv: the same best epoch,
    scores, images and throughput as the summary.json training wrote, flagged partial."""
    from doodle.runs import report as reporting

    fold = tmp_path / "killed/fold0"
    shutil.copytree(run / "fold0", fold)
    written = json.loads((fold / "summary.json").read_text())
    (fold / "summary.json").unlink()
    rebuilt = reporting.load_fold(fold).summary
    same = ("best_epoch", "val/map3", "val/acc1", "val/loss", "epochs_run", "images_seen", "train_images_per_second",
            "fold", "world_size")
    assert {k: rebuilt[k] for k in same} == {k: written[k] for k in same}
    assert rebuilt["partial"] is True and "partial" not in written
    assert abs(rebuilt["wall_seconds"] - written["wall_seconds"]) < 60  # metrics.csv's last time vs the end
