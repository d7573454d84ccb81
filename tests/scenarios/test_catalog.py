"""scenarios.catalog: listing and searching a folder of sessions, and serving it through Tiled."""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import control
from control.errors import PfmTwinError
from control.recording import Recorder, read_session
from scenarios.catalog import FIELDS, CatalogError, catalog_entries, main, search

ROOT = Path(__file__).resolve().parents[2]
URL = "twin://?seed={seed}&day={day}&grid=64&field=5e-7&init=wall&scanner=closed&texture=0"
SPEC = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(4e-7, 4e-7), pixels=(32, 32), line_rate=10.0)
SMALL = control.ScanSpec(center=(2.5e-7, 2.5e-7), size=(2e-7, 2e-7), pixels=(16, 16), line_rate=10.0)

#: name -> (relative path, metadata, seed, day, scans, pulses)
SESSIONS = {
    "s1": ("ada/walls-1.h5", {"sample": "PTO-110", "investigator": "ada", "project": "walls", "material": "PbTiO3"},
           3, 0, [SPEC], 1),
    "s2": ("bob/walls-2.h5", {"sample": "PTO-111", "investigator": "bob", "project": "walls", "material": "PbTiO3"},
           4, 2, [SMALL], 2),
    "s3": ("domains.h5", {"sample": "BTO-7", "investigator": "ada", "project": "domains", "material": "BaTiO3"},
           5, 0, [SMALL, SMALL], 0),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three small sessions in nested folders, plus an HDF5 file and a text file that are not."""
    root = tmp_path_factory.mktemp("catalog")
    for relative, metadata, seed, day, scans, pulses in SESSIONS.values():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with Recorder(control.connect(URL.format(seed=seed, day=day)), path, metadata=metadata) as scope:
            for spec in scans:
                scope.scan(spec)
            for k in range(pulses):
                scope.apply_pulse(2.5e-7 + 2e-8 * k, 2.5e-7, 6.0, 1e-3)
    with h5py.File(root / "ada" / "other.h5", "w") as file:  # HDF5, but not a session
        file.attrs["format"] = "something.else"
        file["data"] = np.arange(4.0)
    (root / "notes.h5").write_text("not HDF5 at all\n")
    (root / "readme.txt").write_text("not a .h5 file: never looked at\n")
    return root


def _names(entries: list[dict], folder: Path) -> set[str]:
    paths = {str(folder / relative): name for name, (relative, *_) in SESSIONS.items()}
    return {paths[entry["path"]] for entry in entries}


# -- listing and searching --------------------------------------------------------------------


def test_entries_hold_each_session_once_with_its_metadata_and_skip_the_rest(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="scenarios.catalog"):
        entries = catalog_entries(folder)
    assert [tuple(e) for e in entries] == [FIELDS] * 3
    assert _names(entries, folder) == {"s1", "s2", "s3"}
    for entry in entries:
        name = _names([entry], folder).pop()
        relative, metadata, seed, day, scans, pulses = SESSIONS[name]
        assert {k: entry[k] for k in metadata} == metadata
        assert (entry["seed"], entry["day"], entry["scans"], entry["pulses"]) == (seed, day, len(scans), pulses)
        assert entry["backend_url"] == URL.format(seed=seed, day=day)
        assert entry["software_version"] == control.__version__
        session = read_session(entry["path"])  # counts agree with the reader, images not loaded
        assert (len(session.scans()), len(session.pulses())) == (entry["scans"], entry["pulses"])
        assert entry["created"] == session.metadata["created"]
    json.dumps(entries)  # plain data
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned
    assert any("other.h5" in m and "something.else" in m for m in warned)
    assert any("notes.h5" in m for m in warned)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["sample=PTO-110"], {"s1"}),
        (["sample=BTO-7"], {"s3"}),
        (["investigator=ada"], {"s1", "s3"}),
        (["investigator=bob"], {"s2"}),
        (["project=walls"], {"s1", "s2"}),
        (["project=domains"], {"s3"}),
        (["material=BaTiO3"], {"s3"}),
        (["material=PbTiO3"], {"s1", "s2"}),
        (["seed=4"], {"s2"}),
        (["day=0"], {"s1", "s3"}),
        (["day=2", "investigator=bob"], {"s2"}),
        (["investigator=ada", "project=walls"], {"s1"}),
        (["investigator=bob", "project=domains"], set()),
        (["scans=2"], {"s3"}),
        (["pulses=0"], {"s3"}),
        (["sample=PTO-11"], set()),  # exact, not a prefix
        (["day="], set()),  # an empty value matches None only
        ([], {"s1", "s2", "s3"}),
    ],
)
def test_search_returns_exactly_the_matching_sessions(folder, where, expected):
    assert _names(search(folder, where), folder) == expected


def test_search_by_path(folder):
    path = str(folder / SESSIONS["s2"][0])
    assert [e["path"] for e in search(folder, [f"path={path}"])] == [path]


@pytest.mark.parametrize(
    ("item", "says"),
    [("sample", "is not KEY=VALUE"), ("colour=red", "unknown field 'colour'"), ("=PTO-110", "unknown field ''"),
     ("Sample=PTO-110", "unknown field 'Sample'")],
)
def test_a_bad_where_item_is_an_error_naming_it_and_the_accepted_fields(folder, item, says):
    with pytest.raises(CatalogError) as caught:
        search(folder, ["investigator=ada", item])
    message = str(caught.value)
    assert repr(item) in message and says in message
    assert ", ".join(FIELDS) in message
    assert isinstance(caught.value, PfmTwinError) and isinstance(caught.value, ValueError)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        catalog_entries(tmp_path / "nowhere")
    file = tmp_path / "a.h5"
    file.write_bytes(b"")
    with pytest.raises(CatalogError, match="is a file"):
        search(file, [])


def test_command_line_prints_matches_as_json_lines_or_a_table(folder, capsys):
    assert main([str(folder), "--where", "investigator=ada", "--where", "project=walls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["sample"] for line in lines] == ["PTO-110"]
    assert main([str(folder), "--list", "--table"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["sample", "investigator", "project"] and len(table) == 4
    assert main([str(folder), "--where", "colour=red"]) == 2
    assert "unknown field 'colour'" in capsys.readouterr().err


# -- serving through Tiled --------------------------------------------------------------------


def _read_line(proc: subprocess.Popen, stderr: Path, timeout: float) -> str:
    """The first stdout line of ``proc``, or an assertion error with its stderr."""
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            assert left > 0, f"no listening line within {timeout} s; stderr:\n{stderr.read_text()}"
            if selector.select(left):
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, f"server exited ({proc.wait()}) before listening; stderr:\n{stderr.read_text()}"
                data += chunk
    return data.split(b"\n", 1)[0].decode()


def _session_members(sid: int) -> set[int]:
    """Live (not zombie) processes of session ``sid``: the server and anything it started."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, _ppid, _pgrp, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
            except (OSError, ValueError):
                continue  # ended meanwhile
            if int(session) == sid and state != "Z":
                members.add(int(entry.name))
    return members


def test_served_catalog_searches_with_tiled_queries_and_reads_scans_bit_for_bit(folder, tmp_path):
    import httpx
    from tiled.client import from_uri
    from tiled.queries import Key

    stderr = tmp_path / "server.err"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scenarios.catalog", str(folder), "--port", "0"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
        )
    try:
        line = _read_line(proc, stderr, timeout=60)
        url = json.loads(line)["listening"]
        assert url.startswith("http://127.0.0.1:") and "?api_key=" in url
        base = url.split("?", 1)[0]

        client = from_uri(url)
        try:
            assert len(client) == 3
            paths = {key: client[key].metadata["path"] for key in client}
            assert _names([{"path": p} for p in paths.values()], folder) == {"s1", "s2", "s3"}
            by_name = {_names([{"path": p}], folder).pop(): key for key, p in paths.items()}
            assert by_name["s1"] == "ada__walls-1"  # folders joined by "__", without .h5

            def found(*queries) -> set[str]:
                results = client
                for query in queries:
                    results = results.search(query)
                return _names([{"path": node.metadata["path"]} for node in results.values()], folder)

            assert found(Key("project") == "walls") == {"s1", "s2"}
            assert found(Key("project") == "domains") == {"s3"}
            assert found(Key("investigator") == "ada") == {"s1", "s3"}
            assert found(Key("investigator") == "bob") == {"s2"}
            assert found(Key("sample") == "PTO-110") == {"s1"}
            assert found(Key("sample") == "nothing") == set()
            assert found(Key("material") == "BaTiO3") == {"s3"}
            assert found(Key("seed") == 4) == {"s2"}
            assert found(Key("day") == 0, Key("investigator") == "ada") == {"s1", "s3"}
            assert found(Key("backend_url") == URL.format(seed=5, day=0)) == {"s3"}
            assert found(Key("software_version") == control.__version__) == {"s1", "s2", "s3"}

            session = client[by_name["s1"]]
            assert session.metadata["scan_results"] == ["commands/000000/result"]
            amplitude = session["commands"]["000000"]["result"]["amplitude"]
            assert amplitude.metadata["units"] == "m" and amplitude.structure().dims == ("y", "x")
            image = amplitude.read()
            with h5py.File(folder / SESSIONS["s1"][0], "r") as file:
                stored = file["commands/000000/result/amplitude"][()]
            assert image.shape == (32, 32) and image.dtype == stored.dtype
            assert np.array_equal(image, stored)
            assert np.array_equal(image, read_session(folder / SESSIONS["s1"][0]).scans()[0].channels["amplitude"])
            assert np.array_equal(amplitude[4:9, 10:20], stored[4:9, 10:20])
        finally:
            client.context.close()

        # single-user: the API key is needed to read; the web UI is served
        assert httpx.get(f"{base}api/v1/metadata/", timeout=10).status_code == 401
        assert httpx.get(f"{base}ui/", timeout=10).status_code == 200

        assert _session_members(proc.pid) == {proc.pid}, "the server started a process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, stderr.read_text()
        deadline = time.monotonic() + 5
        while _session_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session_members(proc.pid) == set(), "a process of the server outlived it"
    finally:
        if proc.poll() is None:  # its process group is alive, so the id is still the server's
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in _session_members(proc.pid):  # anything the server left in its session
            os.kill(pid, signal.SIGKILL)
        proc.stdout.close()
