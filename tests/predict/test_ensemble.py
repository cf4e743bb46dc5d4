import json
from pathlib import Path

import numpy as np
import pytest
from helpers import command_module, run_telling_imports

from doodle import cli
from doodle.metrics import accuracy, map_at_k
from doodle.predict import ensemble as ens
from doodle.runs.folder import RunDir, save_logits

TOOLS = Path(__file__).resolve().parents[2] / "tools"
CLASSES = ["The Eiffel Tower", "cat", "dog", "fish"]


def load_tool(name: str):
    return command_module(TOOLS / f"{name}.py")


def noisy_logits(target, n_classes, rng, signal=1.5, noise=1.0):
    x = rng.standard_normal((len(target), n_classes)).astype(np.float32) * noise
    x[np.arange(len(target)), target] += signal
    return x


def member(name, keys, logits, target=None, classes=CLASSES):
    return {"name": name, "key_id": np.asarray(keys), "logits": logits, "classes": list(classes), "target": target}


# ---------------------------------------------------------------- alignment and blending


def test_align_sorts_shuffled_members_by_key_id():
    rng = np.random.default_rng(0)
    keys = np.array([30, 10, 20, 40])
    target = np.array([0, 1, 2, 3])
    a = member("a", keys, noisy_logits(target, 4, rng), target)
    perm = np.array([2, 0, 3, 1])
    b = member("b", keys[perm], a["logits"][perm] * 2, target[perm])
    al = ens.align_members([a, b])
    assert al.key_id.tolist() == [10, 20, 30, 40]
    assert al.target.tolist() == [1, 2, 0, 3]
    np.testing.assert_allclose(al.logits[1], 2 * al.logits[0])
    assert al.names == ["a", "b"] and al.classes == CLASSES


def test_align_refuses_another_class_order_naming_the_member():
    x = np.zeros((2, 4), np.float32)
    a, b = member("a", [1, 2], x), member("runB", [1, 2], x, classes=["cat", "The Eiffel Tower", "dog", "fish"])
    with pytest.raises(ens.EnsembleError, match="member runB has another class order than a .index 0"):
        ens.align_members([a, b])


def test_align_refuses_members_with_other_drawings():
    x = np.zeros((3, 4), np.float32)
    a, b = member("a", [1, 2, 3], x), member("runB", [1, 2], x[:2])
    with pytest.raises(ens.EnsembleError, match="member runB covers other drawings than a: 0 key_ids not in a, 1"):
        ens.align_members([a, b])
    with pytest.raises(ens.EnsembleError, match="runB has duplicated key_ids"):
        ens.align_members([a, member("runB", [1, 1, 2], x)])


def test_align_refuses_disagreeing_targets():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ens.EnsembleError, match="member b disagrees with a on the target of 1 drawings"):
        ens.align_members([member("a", [1, 2], x, np.array([0, 1])), member("b", [1, 2], x, np.array([0, 2]))])


def test_prob_mean_of_independent_noisy_members_beats_the_best_member():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 20, 3000)
    keys = np.arange(3000)
    members = [member(f"m{i}", keys, noisy_logits(target, 20, rng, signal=2.0, noise=1.5), target,
                      classes=[str(c) for c in range(20)]) for i in range(2)]
    al = ens.align_members(members)
    best = max(map_at_k(x, target) for x in al.logits)
    assert map_at_k(ens.blend(al, None, "prob_mean"), target) > best
    assert map_at_k(ens.blend(al, [1, 1], "logit_mean"), target) > best
    probs = ens.blend(al, [3, 1], "prob_mean")
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_blend_refuses_bad_weights_and_methods():
    al = ens.align_members([member("a", [1], np.zeros((1, 4))), member("b", [1], np.zeros((1, 4)))])
    with pytest.raises(ens.EnsembleError, match="3 weights for 2 members"):
        ens.blend(al, [1, 1, 1])
    with pytest.raises(ens.EnsembleError, match="non-negative"):
        ens.blend(al, [1, -1])
    with pytest.raises(ens.EnsembleError, match="unknown blend method 'median'.*prob_mean, logit_mean"):
        ens.blend(al, None, "median")


# ---------------------------------------------------------------- stacking and balancing


def test_stacking_beats_chance_with_cross_validation():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 5, 500)
    good = ens.softmax(noisy_logits(target, 5, rng, signal=2.0))
    bad = ens.softmax(rng.standard_normal((500, 5)))
    oof, model = ens.stack_oof([good, bad], target, n_splits=3, seed=0)
    assert oof.shape == (500, 5)
    chance = (1 + 1 / 2 + 1 / 3) / 5
    assert map_at_k(oof, target) > chance + 0.2
    test = ens.stack_predict(model, [good[:7], bad[:7]])
    assert test.shape == (7, 5)
    np.testing.assert_allclose(test.sum(axis=1), 1, rtol=1e-5)


def test_stacking_learns_to_sharpen_under_confident_members():
    rng = np.random.default_rng(5)
    target = rng.integers(0, 30, 600)
    members = [ens.softmax(noisy_logits(target, 30, rng, signal=2.0, noise=1.5) / 4) for _ in range(2)]
    oof, model = ens.stack_oof(members, target)
    mean = (members[0] + members[1]) / 2
    assert map_at_k(oof, target) >= map_at_k(mean, target) - 0.01
    assert oof.max(axis=1).mean() > mean.max(axis=1).mean()  # tempered: more confident
    assert (model.coef_ > 1).all()


def test_stacking_needs_a_drawing_per_split():
    with pytest.raises(ens.EnsembleError, match="at least 5 drawings, got 3"):
        ens.stack_oof([np.full((3, 2), 0.5)], np.array([0, 1, 0]), n_splits=5)


def test_balance_moves_counts_toward_uniform_without_losing_accuracy():
    rng = np.random.default_rng(3)
    n_classes = 10
    target = np.repeat(np.arange(n_classes), 300)  # a balanced truth, like Kaggle's test set
    logits = noisy_logits(target, n_classes, rng, signal=1.5)
    logits[:, :3] += 1.0  # the model over-predicts classes 0-2
    probs = ens.softmax(logits)
    before = np.bincount(probs.argmax(axis=1), minlength=n_classes)
    balanced = ens.balance(probs, tol=0.05)
    after = np.bincount(balanced.argmax(axis=1), minlength=n_classes)
    assert after.max() <= 300 * 1.05 < before.max()
    assert after.max() - after.min() < before.max() - before.min()
    assert accuracy(balanced, target) >= accuracy(probs, target)
    np.testing.assert_allclose(balanced.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(balanced, ens.balance(probs, tol=0.05))  # deterministic


def test_balanced_subset_keeps_the_rarest_count_per_class():
    target = np.array([0] * 5 + [1] * 2 + [2] * 3)
    idx = ens.balanced_subset(target)
    assert np.bincount(target[idx]).tolist() == [2, 2, 2]
    assert np.all(np.diff(idx) > 0)


# ---------------------------------------------------------------- tools/ensemble.py


def make_run(root, name, keys, target, test_keys, seed, folds=2, with_test=True):
    """A fake run folder: out-of-fold val logits split over folds, test logits in every fold."""
    rng = np.random.default_rng(seed)
    for k in range(folds):
        sel = np.arange(len(keys)) % folds == k
        rd = RunDir.make(root, name, k)
        rd.root.mkdir(parents=True)
        save_logits(rd.val_logits, noisy_logits(target[sel], len(CLASSES), rng), keys[sel], CLASSES, target[sel])
        if with_test:
            save_logits(rd.test_logits, rng.standard_normal((len(test_keys), len(CLASSES))), test_keys, CLASSES)
    return root / name


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(4)
    keys = rng.permutation(np.arange(1000, 1400))
    target = rng.integers(0, len(CLASSES), len(keys))
    test_keys = np.arange(9000, 9050)
    out = tmp_path / "outputs"
    a = make_run(out, "runA", keys, target, test_keys, seed=1)
    b = make_run(out, "runB", keys, target, rng.permutation(test_keys), seed=2)
    test_csv = tmp_path / "test_simplified.csv"
    test_csv.write_text("key_id,countrycode,drawing\n" + "".join(f'{k},US,"[]"\n' for k in test_keys))
    return {"a": a, "b": b, "test": test_csv, "out": out, "keys": keys, "target": target, "test_keys": test_keys}


@pytest.mark.parametrize("method", ["prob_mean", "logit_mean", "stack"])
def test_ensemble_tool_end_to_end(runs, tmp_path, method, capsys):
    tool = load_tool("ensemble")
    csv = tmp_path / "subs" / f"{method}.csv"
    argv = [str(runs["a"]), str(runs["b"]), "--method", method, "--out", str(csv), "--test", str(runs["test"]),
            "--balance"]
    assert tool.main(argv + (["--weights", "2,1"] if method != "stack" else [])) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "key_id,word" and len(lines) == 51
    assert {int(line.split(",")[0]) for line in lines[1:]} == set(runs["test_keys"].tolist())
    report = json.loads(csv.with_suffix(".json").read_text())
    assert report == json.loads(capsys.readouterr().out)
    assert report["method"] == method and report["val_rows"] == 400 and report["test_rows"] == 50
    assert [m["name"] for m in report["members"]] == [str(runs["a"]), str(runs["b"])]
    assert all(0 < m["val/map3"] <= 1 for m in report["members"])
    assert report["scores"]["blend"]["val/map3"] > max(m["val/map3"] for m in report["members"]) - 0.05
    assert set(report["balance"]) == {"rows", "per_class", "before", "after"}
    if method == "stack":
        assert "prob_mean" in report["scores"]


def test_blending_run_folders_needs_neither_torch_nor_scikit_learn(runs, tmp_path):
    """`tools/ensemble.py outputs/*` reads logits files: it must not wait ~10 s for torch and timm (needed only for
    an exported member) or scikit-learn (only for --method stack)."""
    out = tmp_path / "mean.csv"
    res, imported = run_telling_imports("tools/ensemble.py", str(runs["a"]), str(runs["b"]), "--out", str(out),
                                        "--test", str(runs["test"]))
    assert res.returncode == 0, res.stderr[-2000:]
    assert imported == set() and len(out.read_text().splitlines()) == 51
    res, imported = run_telling_imports("tools/ensemble.py", str(runs["a"]), str(runs["b"]), "--out", str(out),
                                        "--test", str(runs["test"]), "--method", "stack")
    assert res.returncode == 0, res.stderr[-2000:]
    assert imported == {"sklearn"}
    assert json.loads(out.with_suffix(".json").read_text())["method"] == "stack"


def test_ensemble_tool_fold_folders_default_out_and_no_test_csv(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tool = load_tool("ensemble")
    assert tool.main([str(runs["a"] / "fold0"), str(runs["b"] / "fold0")]) == 0
    report = json.loads((tmp_path / "submissions" / "ensemble_prob_mean.json").read_text())
    assert report["val_rows"] == 200 and report["members"][0]["folds"] == [0]


def test_ensemble_tool_without_test_logits_reports_only(tmp_path, capsys):
    keys, target = np.arange(100), np.arange(100) % 4
    run = make_run(tmp_path, "runC", keys, target, np.arange(5), seed=0, with_test=False)
    csv = tmp_path / "sub.csv"
    assert load_tool("ensemble").main([str(run), "--out", str(csv)]) == 0
    assert not csv.exists()
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["submission"] is None and report["val_rows"] == 100
    assert "no member has test logits: no CSV written" in captured.err


def run_cli(tool_name, argv, capsys):
    code = cli.run(load_tool(tool_name).main, argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return code, err


def test_ensemble_tool_errors_name_the_member(runs, tmp_path, capsys):
    (runs["b"] / "fold1" / "test_logits.npz").unlink()
    code, err = run_cli("ensemble", [str(runs["a"]), str(runs["b"]), "--out", str(tmp_path / "x.csv")], capsys)
    assert code == 2 and len(err) == 1 and "runB/fold1/test_logits.npz not found" in err[0]
    code, err = run_cli("ensemble", [str(runs["a"]), str(runs["b"] / "fold1"), "--out", str(tmp_path / "x.csv")],
                        capsys)
    assert code == 2 and "runB/fold1 has no test_logits.npz" in err[0]
    other = make_run(runs["out"], "runD", runs["keys"][:300], runs["target"][:300], runs["test_keys"], seed=5)
    code, err = run_cli("ensemble", [str(runs["a"]), str(other)], capsys)
    assert code == 2 and f"member {other} covers other drawings than {runs['a']}" in err[0]
    code, err = run_cli("ensemble", [str(runs["a"]), str(tmp_path / "nope")], capsys)
    assert code == 2 and "nope not found" in err[0]
    code, err = run_cli("ensemble", [str(runs["a"]), str(runs["b"]) + "_"], capsys)  # a typo names the nearest run
    assert code == 2 and err[0].endswith(f"runB_ not found (did you mean {runs['b']}?)")
    code, err = run_cli("ensemble", [str(runs["a"]), "--method", "rerank", "--store", str(tmp_path / "nostore")],
                        capsys)  # a --store given by hand must be one; only the members' own may be missing
    assert code == 2 and len(err) == 1 and err[0].endswith("nostore: not a prepared store (no store.json)")
    code, err = run_cli("ensemble", [str(runs["a"]), "--weights", "1,2"], capsys)
    assert code == 2 and "2 weights for 1 members" in err[0]


# ---------------------------------------------------------------- tools/submit.py


@pytest.fixture
def kaggle_test(tmp_path):
    path = tmp_path / "test_simplified.csv"
    path.write_text('key_id,countrycode,drawing\n1,US,"[]"\n2,DE,"[]"\n')
    return path


def test_submit_dry_run_validates(tmp_path, kaggle_test, capsys):
    good = tmp_path / "good.csv"
    good.write_text("key_id,word\n1,The_Eiffel_Tower cat dog\n2,cat dog fish\n")
    assert cli.run(load_tool("submit").main, [str(good), "--test", str(kaggle_test), "--dry-run"]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("key_id,word\n1,The Eiffel Tower cat dog\n2,cat dog fish\n")
    code, err = run_cli("submit", [str(bad), "--test", str(kaggle_test), "--dry-run"], capsys)
    assert code == 2 and len(err) == 1 and "bad.csv line 2" in err[0] and "The_Eiffel_Tower" in err[0]


def test_submit_without_credentials_says_how_to_provide_them(tmp_path, kaggle_test, capsys, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "kaggle_cfg").mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle_cfg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    good = tmp_path / "good.csv"
    good.write_text("key_id,word\n1,The_Eiffel_Tower cat dog\n2,cat dog fish\n")
    code, err = run_cli("submit", [str(good), "-m", "test", "--test", str(kaggle_test)], capsys)
    assert code == 2 and len(err) == 1
    assert "no Kaggle credentials" in err[0] and "KAGGLE_USERNAME and KAGGLE_KEY" in err[0]


def test_prob_correlation_is_one_for_twins_and_lower_for_independent_members():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 10))
    keys = np.arange(200)
    classes = [f"c{i}" for i in range(10)]
    target = rng.integers(0, 10, 200)
    twins = ens.align_members([{"logits": base, "key_id": keys, "classes": classes, "target": target}] * 2)
    assert ens.prob_correlation(twins) == [[1.0, 1.0], [1.0, 1.0]]
    other = {"logits": rng.normal(size=(200, 10)), "key_id": keys, "classes": classes, "target": target}
    mixed = ens.align_members([{"logits": base, "key_id": keys, "classes": classes, "target": target}, other])
    assert abs(ens.prob_correlation(mixed)[0][1]) < 0.5
