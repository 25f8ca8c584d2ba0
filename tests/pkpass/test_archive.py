"""The .pkpass zip writer: what zipfile (and so Wallet's unzip) reads back."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from passhouse.pkpass.archive import MemberCache, manifest_and_members, prepare, write_zip

FILES = {
    "pass.json": b'{"formatVersion":1,' + b'"x":"' + b"a" * 5000 + b'"}',
    "icon.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "zh-Hans.lproj/pass.strings": '"k" = "值";\n'.encode("utf-16"),
    "fr.lproj/café.png": b"\x89PNG\r\n\x1a\nimage",
    "empty.txt": b"",
}


def _written(files: dict[str, bytes]) -> bytes:
    _, members = manifest_and_members(files, MemberCache())
    return write_zip(members)


def test_zipfile_reads_back_every_member_with_its_crc_and_mode(tmp_path: Path) -> None:
    data = _written(FILES)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert {info.filename: archive.read(info) for info in archive.infolist()} == FILES
        infos = {info.filename: info for info in archive.infolist()}
    assert infos["pass.json"].compress_type == zipfile.ZIP_DEFLATED
    assert infos["pass.json"].compress_size < 200
    assert infos["icon.png"].compress_type == zipfile.ZIP_STORED
    assert infos["icon.png"].date_time == (1980, 1, 1, 0, 0, 0)
    assert infos["icon.png"].external_attr >> 16 == 0o100644
    # Info-ZIP's unzip agrees: every CRC and size, non-ASCII names included.
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed")
    path = tmp_path / "pass.zip"
    path.write_bytes(data)
    tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "No errors detected" in tested.stdout
    assert "fr.lproj/café.png" in tested.stdout


def test_the_manifest_digests_are_the_files_sha1() -> None:
    digests, members = manifest_and_members(FILES, MemberCache())

    assert digests["empty.txt"] == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    assert [m.name.decode() for m in members] == sorted(FILES)


def test_the_same_files_give_the_same_bytes_and_a_changed_one_does_not() -> None:
    changed = {**FILES, "icon.png": FILES["icon.png"] + b"!"}

    assert _written(FILES) == _written(dict(FILES))
    assert _written(changed) != _written(FILES)


def test_the_cache_keeps_members_within_its_budget_and_by_content() -> None:
    cache = MemberCache(max_bytes=80_000)
    first = cache.get("a.png", b"x" * 4000)
    assert cache.get("a.png", b"x" * 4000) is first
    for index in range(30):
        cache.get(f"{index}.png", bytes([index]) * 4000)

    assert cache.get("a.png", b"x" * 4000) is not first  # evicted, prepared again
    assert cache.get("a.png", b"y" * 4000).crc != first.crc
    assert prepare("a.png", b"x" * 4000) == first


def test_fresh_files_are_written_and_digested_but_not_kept() -> None:
    cache = MemberCache()
    assets = {name: data for name, data in FILES.items() if name != "pass.json"}

    digests, members = manifest_and_members(assets, cache, fresh={"pass.json": FILES["pass.json"]})

    assert write_zip(members) == _written(FILES)
    assert digests == manifest_and_members(FILES, MemberCache())[0]
    assert cache.get("icon.png", FILES["icon.png"]) is next(
        member for member in members if member.name == b"icon.png"
    )
    assert len(cache) == len(assets)
