"""What INPUTS means: dataset splits, folders, files, .txt lists; bad input is one clear PredictError."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnsweep.predict import PredictError, resolve_inputs
from cnnsweep.predict.inputs import parse_split_spec


def _write_pngs(folder, n=3):
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = [folder / "a.png", folder / "sub" / "b.PNG", folder / "c.jpg"][:n]
    for p in paths:
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(p)
    (folder / "notes.md").write_text("not an image")
    return paths


def test_split_spec_needs_a_registered_format_and_a_known_split():
    assert parse_split_spec("gtsrb_pickle:../shared/data/gtsrb:valid") == ("gtsrb_pickle", "../shared/data/gtsrb", "valid")
    assert parse_split_spec("image_folder:C:/data:test") == ("image_folder", "C:/data", "test")  # colons in ROOT
    assert parse_split_spec("nosuchformat:/x:valid") is None
    assert parse_split_spec("gtsrb_pickle:/x:validation") is None
    assert parse_split_spec("images/a.png") is None


def test_folder_is_every_image_under_it_sorted_with_relative_ids(tmp_path):
    _write_pngs(tmp_path)
    inputs = resolve_inputs([str(tmp_path)])
    assert inputs.ids == ["a.png", "c.jpg", "sub/b.PNG"] and inputs.labels is None
    chunks = list(inputs.chunks(2))
    assert [c.ids for c in chunks] == [["a.png", "c.jpg"], ["sub/b.PNG"]]
    assert chunks[0].encoded[0] == (tmp_path / "a.png").read_bytes()


def test_files_and_txt_lists(tmp_path):
    paths = _write_pngs(tmp_path)
    (tmp_path / "list.txt").write_text("# test images\na.png\n\nsub/b.PNG  # second\n")
    assert resolve_inputs([str(paths[2]), str(tmp_path / "list.txt")]).ids == [str(paths[2]), str(paths[0]), str(paths[1])]


@pytest.mark.parametrize("make, words", [
    (lambda d: [str(d / "missing.png")], "no such file or folder"),
    (lambda d: [str(d / "notes.md")], "not an image file"),
    (lambda d: [str(d / "empty")], "no image files"),
    (lambda d: [], "no inputs"),
    (lambda d: ["gtsrb_pickle:" + str(d) + ":valid", str(d / "a.png")], "must be the only input"),
    (lambda d: ["gtsrb_pickle:" + str(d / "nothing") + ":valid"], str("nothing")),
])
def test_bad_inputs_are_one_clear_line(tmp_path, make, words):
    _write_pngs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError, match=words) as info:
        resolve_inputs(make(tmp_path))
    assert "\n" not in str(info.value)


def test_list_naming_a_missing_file(tmp_path):
    _write_pngs(tmp_path)
    (tmp_path / "list.txt").write_text("a.png\ngone.png\n")
    with pytest.raises(PredictError, match="gone.png: no such image file"):
        resolve_inputs([str(tmp_path / "list.txt")])


# ---------------------------------------------------------------------------- links and sizes


def test_a_link_out_of_a_folder_input_is_not_read(tmp_path):
    folder, outside = tmp_path / "in", tmp_path / "outside"
    _write_pngs(folder, 1)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"private")
    (folder / "secret.png").symlink_to(outside / "secret.png")
    with pytest.raises(PredictError, match=r"secret\.png: a link to .*secret\.png, outside .*in: not read") as info:
        resolve_inputs([str(folder)])
    assert "\n" not in str(info.value)


def test_a_linked_folder_out_of_a_folder_input_is_not_listed(tmp_path):
    folder, outside = tmp_path / "in", tmp_path / "outside"
    _write_pngs(folder, 1)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"private")
    (folder / "elsewhere").symlink_to(outside)
    inputs = resolve_inputs([str(folder)])
    assert inputs.ids == ["a.png"] and all(b"private" not in b for c in inputs.chunks(8) for b in c.encoded)


def test_links_inside_a_folder_input_are_read(tmp_path):
    _write_pngs(tmp_path, 1)
    (tmp_path / "sub").rmdir()
    (tmp_path / "alias.png").symlink_to(tmp_path / "a.png")
    inputs = resolve_inputs([str(tmp_path)])
    assert inputs.ids == ["a.png", "alias.png"]
    assert [c.encoded for c in inputs.chunks(8)] == [[(tmp_path / "a.png").read_bytes()] * 2]


def test_chunks_are_bounded_in_bytes_and_an_oversized_file_is_a_read_error(tmp_path, monkeypatch):
    from cnnsweep.predict import inputs as inputs_module

    for i, size in enumerate([100, 100, 100, 300, 100]):
        (tmp_path / f"{i}.png").write_bytes(bytes(size))
    monkeypatch.setattr(inputs_module, "MAX_CHUNK_BYTES", 250)
    monkeypatch.setattr(inputs_module, "MAX_FILE_BYTES", 200)
    chunks = list(resolve_inputs([str(tmp_path)]).chunks(size=4))
    assert [c.ids for c in chunks] == [["0.png", "1.png"], ["2.png", "3.png", "4.png"]]
    assert [sum(map(len, c.encoded)) for c in chunks] == [200, 200]
    assert chunks[1].read_errors == {1: "larger than the 200-byte limit for one image file"}


# ---------------------------------------------------------------------------- .txt lists are untrusted files


@pytest.mark.parametrize("content, words", [
    (b"a.png\nsub/\xff\xfe.png\n", r"list\.txt line 2: not UTF-8 text"),
    (b"a.png\n\n# c\nb\x1b[31m.png\n", r"list\.txt line 4: .*not a printable path"),
])
def test_a_bad_list_file_is_one_clear_line_naming_the_line(tmp_path, content, words):
    _write_pngs(tmp_path)
    (tmp_path / "list.txt").write_bytes(content)
    with pytest.raises(PredictError, match=words) as info:
        resolve_inputs([str(tmp_path / "list.txt")])
    assert "\n" not in str(info.value)


def test_a_list_with_a_bom_and_crlf_line_ends_is_read(tmp_path):
    paths = _write_pngs(tmp_path)
    (tmp_path / "list.txt").write_bytes(b"\xef\xbb\xbfa.png\r\nsub/b.PNG\r\n")
    assert resolve_inputs([str(tmp_path / "list.txt")]).ids == [str(paths[0]), str(paths[1])]


def test_a_list_file_over_the_size_limit_is_not_read(tmp_path):
    from cnnsweep.predict import inputs as inputs_module

    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(inputs_module.MAX_LIST_BYTES + 1)  # sparse: no disk used, and never read
    with pytest.raises(PredictError, match=r"big\.txt: larger than the 16,777,216-byte limit for a \.txt list"):
        resolve_inputs([str(big)])


def test_a_list_over_the_entry_limit_is_refused_before_it_is_built(tmp_path, monkeypatch):
    from cnnsweep.predict import inputs as inputs_module

    monkeypatch.setattr(inputs_module, "MAX_LIST_ENTRIES", 2)
    _write_pngs(tmp_path)
    (tmp_path / "list.txt").write_text("a.png\nsub/b.PNG\nc.jpg\n")
    with pytest.raises(PredictError, match=r"list\.txt line 3: more than 2 paths in one list"):
        resolve_inputs([str(tmp_path / "list.txt")])
