"""Names made safe as paths, and the removal of an earlier run's outputs."""

import pytest

from gspn.tasks.outputs import remove_outputs, safe_name


@pytest.mark.parametrize("name, safe", [
    ("ring", "ring"), ("great white shark", "great_white_shark"), ("n01440764-tench_1.v2", "n01440764-tench_1.v2"),
    ("café", "café"), ("../../x", "____x"), ("a/b\\c", "a_b_c"), ("..", "_"), (".", "_"), ("", "_"),
    ("a..b", "a_b"), ("/etc/passwd", "_etc_passwd"), ("x:y*?", "x_y__"),
])
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def test_remove_outputs_keeps_other_files_and_non_empty_folders(tmp_path):
    for name in ("a.png", "a/1.png", "b/1.png", "b/notes.txt", "keep.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    remove_outputs(tmp_path, "*.png", "*/*.png")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["b", "b/notes.txt", "keep.txt"]
