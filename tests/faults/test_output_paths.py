"""The one writer for whole files (write_atomically): what a path points at is what is
written; a symlink stays a link, a device or FIFO is never replaced, `-` is stdout."""

from __future__ import annotations

import os
import stat

import pytest

from antinet_tui.fileio import OutputError, check_output, write_atomically


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    target = tmp_path / "data" / "report.md"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o600)
    link = tmp_path / "link.md"
    link.symlink_to(target)
    write_atomically(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # its permissions kept
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]  # no temp left


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "new.md")
    write_atomically(link, "hello")
    assert link.is_symlink() and (tmp_path / "new.md").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) == 0o644


def test_a_device_is_written_in_place_never_replaced(dev_full):
    with pytest.raises(OutputError, match=f"{dev_full}: No space left on device"):
        write_atomically(dev_full, "x" * 10_000)
    assert stat.S_ISCHR(os.stat(dev_full).st_mode)
    link = dev_full.with_name("link")
    link.symlink_to(dev_full)  # a link to a device: the device is written, the link stays
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomically(link, "x")
    assert link.is_symlink() and stat.S_ISCHR(os.stat(dev_full).st_mode)


def test_dash_is_stdout(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomically("-", "to stdout\n")
    assert capsys.readouterr().out == "to stdout\n" and not (tmp_path / "-").exists()


@pytest.mark.parametrize("make,message", [
    (lambda tmp: tmp, "is a folder; name a file"),
    (lambda tmp: (tmp / "f").write_text("x") and tmp / "f" / "r.md", "f is a file, not a folder"),
])
def test_paths_that_cannot_be_a_file_say_why(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(OutputError, match=message):
        check_output(path)
    with pytest.raises(OutputError, match=message):
        write_atomically(path, "x")


def test_a_missing_folder_is_created(tmp_path):
    write_atomically(tmp_path / "a" / "b" / "r.md", "x")
    assert (tmp_path / "a" / "b" / "r.md").read_text() == "x"
