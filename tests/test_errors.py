"""errors.nearest_path: the hint at the end of a 'not found' message."""

from doodle.errors import nearest_path


def test_nearest_path_swaps_the_first_missing_part_for_the_closest_existing_name(tmp_path):
    (tmp_path / "outputs/ref27/r18_boost/fold0").mkdir(parents=True)
    (tmp_path / "outputs/ref27/seq_gru").mkdir()
    runs = tmp_path / "outputs/ref27"
    assert nearest_path(runs / "r18_bost") == f" (did you mean {runs / 'r18_boost'}?)"
    assert nearest_path(runs / "r18_bost/fold0") == f" (did you mean {runs / 'r18_boost/fold0'}?)"
    assert nearest_path(runs / "r18_boost/fld0") == f" (did you mean {runs / 'r18_boost/fold0'}?)"
    assert nearest_path(tmp_path / "outptus/ref27/seq_gru") == f" (did you mean {runs / 'seq_gru'}?)"


def test_nearest_path_names_only_a_path_that_exists(tmp_path):
    (tmp_path / "outputs/r18_boost/fold0").mkdir(parents=True)
    assert nearest_path(tmp_path / "outputs/r18_bost/fold7") == ""  # r18_boost/fold7 does not exist either
    assert nearest_path(tmp_path / "outputs/zzzz") == ""  # nothing close
    assert nearest_path(tmp_path / "outputs/r18_boost") == ""  # it exists: no hint


def test_nearest_path_pattern_filters_the_last_part(tmp_path):
    (tmp_path / "r18_boost.yaml").write_text("")
    (tmp_path / "r18_boots.txt").write_text("")
    assert nearest_path(tmp_path / "r18_boot.yaml", "*.yaml") == f" (did you mean {tmp_path / 'r18_boost.yaml'}?)"
    assert nearest_path(tmp_path / "r18_boots.yml", "*.yaml") == f" (did you mean {tmp_path / 'r18_boost.yaml'}?)"
