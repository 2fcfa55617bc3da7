"""Exports never replace one another, even within the same second."""

from antinet_tui.frontends.app.session import write_export


def test_two_exports_in_the_same_second_keep_both(tmp_path):
    first = write_export(tmp_path, "session", {".json": "{}\n", ".md": "one\n"})
    second = write_export(tmp_path, "session", {".json": "{}\n", ".md": "two\n"})
    assert len(set(first + second)) == 4 and all(p.exists() for p in first + second)
    assert first[1].read_text() == "one\n" and second[1].read_text() == "two\n"
