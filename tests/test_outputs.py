"""Result files: written whole, readable as the umask says, one-line errors where they cannot be."""

from __future__ import annotations

import os
import stat

import pytest

from eznas_store.errors import OutputError
from eznas_store.outputs import ensure_dir, write_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_open(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        p = write_atomic(tmp_path / "report.md", "# hi\n")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert p.read_text() == "# hi\n" and not list(tmp_path.glob(".*.tmp"))


def test_out_that_is_a_file_is_a_one_line_error(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        ensure_dir(f)
    with pytest.raises(OutputError, match="is a file"):
        ensure_dir(f / "sub")
    with pytest.raises(OutputError, match="cannot write"):
        write_atomic(f / "report.md", "x")
    d = tmp_path / "folder"
    d.mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        write_atomic(d, "x")
    assert ensure_dir(tmp_path / "a" / "b").is_dir()
