"""Fold folders of a run are found one way everywhere (the page, reports, ensembles), in fold order."""

import numpy as np
import pytest

from doodle.runs.folder import find_folds, fold_dirs, join_val_logits


def make_run(root, folds, marker="config.yaml"):
    for k in folds:
        (root / f"fold{k}").mkdir(parents=True)
        (root / f"fold{k}" / marker).write_text("x")
    return root


def test_run_folder_with_several_folds_in_fold_order(tmp_path):
    run = make_run(tmp_path / "r18", [10, 2, 0])
    (run / "fold5").mkdir()  # no config.yaml: not a fold
    assert list(fold_dirs(run)) == [0, 2, 10]
    assert [f.root.name for f in find_folds(run)] == ["fold0", "fold2", "fold10"]
    assert list(fold_dirs(run, marker=None)) == [0, 2, 5, 10]


def test_a_single_fold_folder_and_not_a_run(tmp_path):
    run = make_run(tmp_path / "r18", [3])
    assert fold_dirs(run / "fold3") == {3: run / "fold3"}
    (tmp_path / "empty").mkdir()
    assert fold_dirs(tmp_path / "empty") == {}
    with pytest.raises(FileNotFoundError, match="is not a run"):
        find_folds(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        fold_dirs(tmp_path / "nowhere")


def part(name, keys, classes=("a", "b")):
    return {"name": name, "logits": np.zeros((len(keys), 2), np.float32), "key_id": np.array(keys),
            "target": np.zeros(len(keys), np.int64), "classes": list(classes)}


def test_join_val_logits_checks_what_makes_them_out_of_fold():
    out = join_val_logits([part("f0", [1, 2]), part("f1", [3])], "run")
    assert out["key_id"].tolist() == [1, 2, 3] and out["logits"].shape == (3, 2) and out["classes"] == ["a", "b"]
    with pytest.raises(ValueError, match="run: folds share key_ids"):
        join_val_logits([part("f0", [1, 2]), part("f1", [2])], "run")
    with pytest.raises(ValueError, match="f1 has another class order than f0"):
        join_val_logits([part("f0", [1]), part("f1", [2], ("b", "a"))], "run")
    with pytest.raises(ValueError, match="f0 has no target"):
        join_val_logits([{**part("f0", [1]), "target": None}], "run")
