"""learning.files: plain data, byte-reproducible and atomic writes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.files import load, plain, save, write_atomically


def test_same_content_same_bytes_under_any_name(tmp_path):
    content = {"format": "pfmtwin.test", "version": 1, "w": torch.arange(5.0), "info": plain({"a": np.float32(1.5)})}
    save(tmp_path / "one.pt", content)
    save(tmp_path / "another-name.pt", content)
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "another-name.pt").read_bytes()
    back = load(tmp_path / "one.pt", ("pfmtwin.test", 1), "test file")
    assert back["info"] == {"a": 1.5} and torch.equal(back["w"], torch.arange(5.0))


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "curve.png"
    target.write_bytes(b"old")

    def broken(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("plotting failed")

    with pytest.raises(RuntimeError, match="plotting failed"):
        write_atomically(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]


def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"cannot write .*no-such-folder.*writable folder"):
        save(tmp_path / "no-such-folder" / "x.pt", {"format": "f", "version": 1}, ValueError)
    with pytest.raises(OSError, match=r"cannot read test file .*missing.pt.: no such file; fit one"):
        load(tmp_path / "missing.pt", ("f", 1), "test file", fix="fit one")
    save(tmp_path / "other.pt", {"format": "g", "version": 2})
    with pytest.raises(OSError, match=r"is not a pfmtwin test file: format \('g', 2\), expected \('f', 1\)"):
        load(tmp_path / "other.pt", ("f", 1), "test file")
    with pytest.raises(TypeError, match=r"info\['fn'\] is .* of type function"):
        plain({"fn": lambda: 0}, "info")
