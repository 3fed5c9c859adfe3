import os

import pytest

from indexer.discover import Found, resolve_roots, walk
from search.errors import NotFound


def _files(entries):
    return sorted(e.path for e in entries if isinstance(e, Found))


def test_walk_survives_symlink_loops_and_visits_each_folder_once(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.txt").write_text("x")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")  # a/b/loop -> a
    os.symlink(tmp_path / "a", tmp_path / "alias")  # a second name for a
    assert _files(walk([str(tmp_path)])) == [str(tmp_path / "a" / "b" / "x.txt")]


def test_hidden_files_and_folders_are_skipped_unless_asked(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "a.txt").write_text("a")
    (tmp_path / ".hidden.txt").write_text("h")
    (tmp_path / "seen.txt").write_text("s")
    assert _files(walk([str(tmp_path)])) == [str(tmp_path / "seen.txt")]
    assert len(_files(walk([str(tmp_path)], include_hidden=True))) == 3


def test_a_hidden_root_named_explicitly_is_walked(tmp_path):
    (tmp_path / ".notes").mkdir()
    (tmp_path / ".notes" / "a.txt").write_text("a")
    assert _files(walk([str(tmp_path / ".notes")])) == [str(tmp_path / ".notes" / "a.txt")]


def test_broken_symlinks_are_reported_not_fatal(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.txt")
    (tmp_path / "ok.txt").write_text("ok")
    entries = list(walk([str(tmp_path)]))
    assert _files(entries) == [str(tmp_path / "ok.txt")]
    assert (str(tmp_path / "dangling.txt"), "broken symlink") in entries


def test_a_missing_root_is_an_error_not_an_empty_folder(tmp_path):
    with pytest.raises(NotFound, match="no such file or folder"):
        resolve_roots([tmp_path / "unmounted"])
    assert resolve_roots([tmp_path, str(tmp_path) + "/"]) == [str(tmp_path)]
