"""learning.files: plain data, byte-reproducible and atomic writes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.files import load_file, plain_data, save_file, write_atomically


def test_same_content_same_bytes_under_any_name(tmp_path):
    content = {"format": "pfmtwin.test", "version": 1, "w": torch.arange(5.0), "info": plain_data({"a": np.float32(1.5)})}
    save_file(tmp_path / "one.pt", content)
    save_file(tmp_path / "another-name.pt", content)
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "another-name.pt").read_bytes()
    back = load_file(tmp_path / "one.pt", ("pfmtwin.test", 1), "test file")
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
        save_file(tmp_path / "no-such-folder" / "x.pt", {"format": "f", "version": 1}, ValueError)
    with pytest.raises(OSError, match=r"cannot read test file .*missing.pt.: no such file; fit one"):
        load_file(tmp_path / "missing.pt", ("f", 1), "test file", fix="fit one")
    save_file(tmp_path / "other.pt", {"format": "g", "version": 2})
    with pytest.raises(OSError, match=r"is not a pfmtwin test file: format \('g', 2\), expected \('f', 1\)"):
        load_file(tmp_path / "other.pt", ("f", 1), "test file")
    with pytest.raises(TypeError, match=r"info\['fn'\] is .* of type function"):
        plain_data({"fn": lambda: 0}, "info")


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    import os

    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_files_are_created_as_open_would_under_the_umask(tmp_path, umask, mask):
    """Issue 11: policy files and reports were 0600 (mkstemp) while session recordings are 0644."""
    import stat

    umask(mask)
    save_file(tmp_path / "policy.pt", {"format": "f", "version": 1})
    write_atomically(tmp_path / "curve.png", lambda tmp: open(tmp, "wb").close())
    with open(tmp_path / "plain.txt", "w"):
        pass
    want = 0o666 & ~mask  # 0o644 under the usual umask 022, as control.recording's session files
    for name in ("policy.pt", "curve.png", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "plain.txt", "policy.pt"]


def _unreadable_contents(tmp_path):
    """Files that are not pfmtwin files: (name, bytes or a writer)."""
    import io
    import zipfile

    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("hello.txt", "not a torch archive")
    return {
        "passwd": b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
        "random": np.random.default_rng(0).bytes(4096),
        "eof": b"))))))))))))))))))))",  # torch.load: EOFError with an empty message
        "brackets": b"\x87" * 20,  # torch.load: IndexError
        "empty": b"",
        "zip": zipped.getvalue(),
    }


@pytest.mark.parametrize("name", ["passwd", "random", "eof", "brackets", "empty", "zip"])
def test_unreadable_files_get_the_given_error_with_file_reason_and_fix(tmp_path, name):
    path = tmp_path / f"{name}.pt"
    path.write_bytes(_unreadable_contents(tmp_path)[name])
    with pytest.raises(ValueError) as info:
        load_file(path, ("f", 1), "test file", ValueError, fix="fit one")
    message = str(info.value)
    assert message.startswith(f"cannot read test file {str(path)!r}: ")
    assert message.endswith("; fit one")
    reason = message[len(f"cannot read test file {str(path)!r}: "):-len("; fit one")]
    assert reason.strip() and "\n" not in message, message
    assert "not a PyTorch file" in reason or "corrupt" in reason, reason


def test_files_of_other_content_are_refused_by_what_they_hold(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(OSError, match=r"list.pt. is not a pfmtwin test file: it holds a list, not a dict with "
                                      r"format and version; fit one"):
        load_file(tmp_path / "list.pt", ("f", 1), "test file", fix="fit one")
    torch.save({"format": "f", "version": 1, "a": np.arange(3)}, tmp_path / "pickled.pt")  # a numpy array: a class
    with pytest.raises(OSError, match=r"cannot read test file .*pickled.pt.: it holds more than plain data and "
                                      r"tensors, or is corrupt \(.*numpy.*\); fit one") as info:
        load_file(tmp_path / "pickled.pt", ("f", 1), "test file", fix="fit one")
    assert "\n" not in str(info.value)
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(OSError, match=r"cannot read test file .*folder.pt.: it is a folder, not a file"):
        load_file(tmp_path / "folder.pt", ("f", 1), "test file")


def test_required_entries_are_checked_by_name(tmp_path):
    save_file(tmp_path / "x.pt", {"format": "f", "version": 1, "w": [1.0]})
    with pytest.raises(OSError, match=r"x.pt. is a pfmtwin test file without its entry 'net'; fit one"):
        load_file(tmp_path / "x.pt", ("f", 1), "test file", fix="fit one", entries={"w": list, "net": dict})
    with pytest.raises(OSError, match=r"x.pt. is a pfmtwin test file whose entry 'w' is a list; expected a Tensor"):
        load_file(tmp_path / "x.pt", ("f", 1), "test file", entries={"w": torch.Tensor})
    assert load_file(tmp_path / "x.pt", ("f", 1), "test file", entries={"w": list})["w"] == [1.0]
