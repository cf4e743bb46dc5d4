import numpy as np
import pandas as pd
import pytest

from doodle.predict.submission import (
    SubmissionError,
    read_test_key_ids,
    to_submission,
    validate_submission,
    write_submission,
)

CLASSES = ["The Eiffel Tower", "cat", "dog", "fish", "ice cream"]
TEST_IDS = np.array([10, 11, 12])
VALID = ["key_id,word", "10,cat dog fish", "11,The_Eiffel_Tower ice_cream cat", "12,fish dog cat"]


def write_lines(tmp_path, lines, name="sub.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_to_submission_top3_best_first_with_underscores():
    scores = np.array([[0.1, 0.5, 0.2, 0.15, 0.05], [0.4, 0.0, 0.1, 0.2, 0.3]], np.float16)
    df = to_submission(scores, np.array([7, 8]), CLASSES)
    assert list(df.columns) == ["key_id", "word"]
    assert df["key_id"].tolist() == [7, 8]
    assert df["word"].tolist() == ["cat dog fish", "The_Eiffel_Tower ice_cream fish"]


def test_to_submission_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        to_submission(np.zeros((3, 5)), np.arange(2), CLASSES)


def test_written_submission_is_valid_and_leaves_no_temp_file(tmp_path):
    rng = np.random.default_rng(0)
    df = to_submission(rng.standard_normal((3, 5)), TEST_IDS, CLASSES)
    path = write_submission(df, tmp_path / "out" / "sub.csv")
    validate_submission(path, TEST_IDS, CLASSES)
    assert path.read_text().splitlines()[0] == "key_id,word"
    assert [p.name for p in path.parent.iterdir()] == ["sub.csv"]


def test_write_submission_needs_the_two_columns(tmp_path):
    with pytest.raises(ValueError, match="columns"):
        write_submission(pd.DataFrame({"id": [1], "word": ["a b c"]}), tmp_path / "x.csv")


def test_valid_file_passes_also_with_crlf(tmp_path):
    validate_submission(write_lines(tmp_path, VALID), TEST_IDS, CLASSES)
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(("\r\n".join(VALID) + "\r\n").encode())
    validate_submission(crlf, TEST_IDS, CLASSES)


@pytest.mark.parametrize("line, bad, message", [
    (2, "10,cat dog", "expected exactly 3 space-separated words, got 2"),
    (3, "11,cat dog fish ice_cream", "got 4"),
    (3, "11,cat cat dog", "a word is repeated"),
    (4, "12,cat dog horse", "unknown word"),
    (2, "10,The Eiffel Tower cat dog", "'The Eiffel Tower' must be written 'The_Eiffel_Tower'"),
    (2, "10,The Eiffel Tower", "unknown word.*must be written 'The_Eiffel_Tower'"),
    (3, "11,cat ice cream", "must be written 'ice_cream'"),
    (3, "99,cat dog fish", "key_id 99 is not in the test set"),
    (4, "11,cat dog fish", "key_id 11 is duplicated \\(first seen on line 3\\)"),
    (2, "ten,cat dog fish", "key_id 'ten' is not a non-negative integer"),
    (3, "11.0,cat dog fish", "not a non-negative integer"),
    (2, "10,cat dog fish,extra", "expected 2 comma-separated fields"),
    (3, "", "expected 2 comma-separated fields"),
])
def test_each_bad_row_is_named_by_its_line(tmp_path, line, bad, message):
    lines = list(VALID)
    lines[line - 1] = bad
    with pytest.raises(SubmissionError, match=rf"sub\.csv line {line}: .*{message}"):
        validate_submission(write_lines(tmp_path, lines), TEST_IDS, CLASSES)


def test_the_first_bad_row_is_reported(tmp_path):
    lines = [VALID[0], "10,cat dog fish", "11,cat dog horse", "x,cat dog fish"]
    with pytest.raises(SubmissionError, match="line 3: unknown word"):
        validate_submission(write_lines(tmp_path, lines), TEST_IDS, CLASSES)


def test_wrong_header(tmp_path):
    lines = ["key_id,words", *VALID[1:]]
    with pytest.raises(SubmissionError, match="line 1: header must be exactly 'key_id,word'"):
        validate_submission(write_lines(tmp_path, lines), TEST_IDS, CLASSES)


def test_missing_key_ids_are_counted_with_an_example(tmp_path):
    with pytest.raises(SubmissionError, match=r"1 of 3 test key_ids have no row \(e.g. 12\)"):
        validate_submission(write_lines(tmp_path, VALID[:3]), TEST_IDS, CLASSES)
    with pytest.raises(SubmissionError, match="3 of 3 test key_ids have no row"):
        validate_submission(write_lines(tmp_path, VALID[:1]), TEST_IDS, CLASSES)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SubmissionError, match="empty file"):
        validate_submission(tmp_path / "empty.csv", TEST_IDS, CLASSES)
    with pytest.raises(SubmissionError, match="not found"):
        validate_submission(tmp_path / "nope.csv", TEST_IDS, CLASSES)


def test_read_test_key_ids(tmp_path):
    (tmp_path / "test.csv").write_text('key_id,countrycode,drawing\n10,US,"[[[1,2],[3,4]]]"\n11,FR,"[]"\n')
    assert read_test_key_ids(tmp_path / "test.csv").tolist() == [10, 11]
    (tmp_path / "bad.csv").write_text("id,drawing\n1,x\n")
    with pytest.raises(SubmissionError, match="no integer key_id column"):
        read_test_key_ids(tmp_path / "bad.csv")
