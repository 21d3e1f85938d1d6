"""What ``perkamo import`` refuses, and that a refused import leaves nothing: a corrupted
byte, a truncated file, an unknown format version (before anything is written), a line that
cannot be stored (named by its number), a Space that exists, and the keys of an original
Space in the same database (unless ``--new-keys``)."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import psycopg
import pytest

from tests.api_client import Api, app_for
from tests.perkamo.moving.conftest import Cli
from tests.perkamo.moving.shop import fill


def reseal(lines: list[bytes]) -> bytes:
    """``lines`` (header to the last line before the footer) with a matching footer."""
    counts: dict[str, int] = {}
    for line in lines[1:]:
        kind = json.loads(line)["type"]
        counts[kind] = counts.get(kind, 0) + 1
    body = b"".join(line + b"\n" for line in lines)
    footer = {"type": "footer", "counts": counts, "sha256": hashlib.sha256(body).hexdigest()}
    return body + json.dumps(footer).encode() + b"\n"


def spaces_named(url: str, slug: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM spaces WHERE slug = %s", (slug,)).fetchone()
    assert row is not None
    return int(row[0])


def orphans(url: str) -> int:
    """Rows of a Space that does not exist (what a half-written import would leave)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE space_id NOT IN (SELECT id FROM spaces))"
            " + (SELECT count(*) FROM profiles WHERE space_id NOT IN (SELECT id FROM spaces))"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def exported(api, runtime, space, pg_url, cli: Cli, tmp_path) -> tuple[Path, list[bytes]]:
    await fill(api, runtime, space, pg_url)
    path = tmp_path / "shop.jsonl"
    assert cli(pg_url, "export", space.slug, "--output", str(path))[0] == 0
    return path, path.read_bytes().splitlines()


def refused(cli: Cli, url: str, path: Path, *flags: str) -> str:
    code, _, err = cli(url, "import", str(path), *flags)
    assert code == 2, err
    return err


async def test_one_corrupted_byte_is_refused_before_anything_is_written(
    exported, space, fresh_url, cli: Cli, tmp_path
):
    path, lines = exported
    raw = bytearray(path.read_bytes())
    middle = raw.index(b'"type":"event"')
    raw[raw.index(b"visit", middle)] = ord("V")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(bytes(raw))
    assert "checksum does not match" in refused(cli, fresh_url, bad)
    assert spaces_named(fresh_url, space.slug) == 0


async def test_a_truncated_file_is_refused(exported, space, fresh_url, cli: Cli, tmp_path):
    path, lines = exported
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert "truncated" in refused(cli, fresh_url, cut)
    without_footer = tmp_path / "nofooter.jsonl"
    without_footer.write_bytes(b"".join(line + b"\n" for line in lines[:-1]))
    assert "no footer" in refused(cli, fresh_url, without_footer)
    assert spaces_named(fresh_url, space.slug) == 0


async def test_an_unknown_format_version_is_refused(exported, space, fresh_url, cli, tmp_path):
    path, lines = exported
    header = json.loads(lines[0])
    header["format_version"] = 2
    newer = tmp_path / "newer.jsonl"
    newer.write_bytes(reseal([json.dumps(header).encode(), *lines[1:-1]]))
    assert "format_version 2 is unknown" in refused(cli, fresh_url, newer)
    assert spaces_named(fresh_url, space.slug) == 0


async def test_a_line_that_cannot_be_stored_is_named_and_nothing_is_left(
    exported, space, fresh_url, cli: Cli, tmp_path
):
    path, lines = exported
    events = [n for n, line in enumerate(lines) if b'"type":"event"' in line]
    at = events[len(events) // 2]
    wrong_type = json.loads(lines[at])
    wrong_type["position"] = "first"
    bad = tmp_path / "bad-type.jsonl"
    bad.write_bytes(reseal([*lines[:at], json.dumps(wrong_type).encode(), *lines[at + 1 : -1]]))
    assert f"line {at + 1}:" in refused(cli, fresh_url, bad)

    not_a_time = json.loads(lines[at])
    not_a_time["received_at"] = "the day before"  # PostgreSQL refuses it inside the COPY
    bad.write_bytes(reseal([*lines[:at], json.dumps(not_a_time).encode(), *lines[at + 1 : -1]]))
    assert f"line {at + 1}:" in refused(cli, fresh_url, bad)

    unknown = json.loads(lines[at])
    unknown["colour"] = "red"
    bad.write_bytes(reseal([*lines[:at], json.dumps(unknown).encode(), *lines[at + 1 : -1]]))
    err = refused(cli, fresh_url, bad)
    assert f"line {at + 1}:" in err and "colour" in err
    assert spaces_named(fresh_url, space.slug) == 0 and orphans(fresh_url) == 0


async def test_a_space_that_exists_is_refused_by_name(exported, space, fresh_url, cli: Cli):
    path, _ = exported
    assert cli(fresh_url, "import", str(path))[0] == 0
    assert f"Space {space.slug!r} exists already" in refused(cli, fresh_url, path)


async def test_beside_the_original_the_copy_needs_new_keys(
    exported, api, runtime, space, pg_url, cli: Cli
):
    path, _ = exported
    copy = space.slug + "-copy"
    err = refused(cli, pg_url, path, "--space", copy)
    assert "already has the file's API key" in err and "--new-keys" in err
    assert spaces_named(pg_url, copy) == 0
    code, out, err = cli(pg_url, "import", str(path), "--space", copy, "--new-keys")
    assert code == 0, err
    new_key = next(line.rsplit(": ", 1)[1] for line in out.splitlines()
                   if line.startswith("key ") and "replaced by" in line)  # fmt: skip
    assert any(line.startswith("browser key ") and "replaced by" in line
               for line in out.splitlines()), out  # fmt: skip
    assert "(revoked) is" in out  # the revoked key stays revoked, its secret never shown
    original = (await api.get("/v1/customer/ann")).body
    moved = (await Api(app_for(runtime), new_key).get("/v1/customer/ann")).body
    assert moved == {**original, "tenant": copy}
    assert (await api.get("/v1/program")).body["space"]["slug"] == space.slug  # the old key


def test_an_export_of_no_such_space_leaves_no_file(pg_url, cli: Cli, tmp_path):
    target = tmp_path / "nothing.jsonl"
    code, _, err = cli(pg_url, "export", "no-such-space", "--output", str(target))
    assert code == 2 and "no Space 'no-such-space'" in err
    assert list(tmp_path.glob("nothing.jsonl*")) == []


async def test_a_damaged_or_cut_gzip_file_is_refused_without_a_trace(
    api, runtime, space, pg_url, fresh_url, cli: Cli, tmp_path
):
    await fill(api, runtime, space, pg_url)
    packed = tmp_path / "shop.jsonl.gz"
    assert cli(pg_url, "export", space.slug, "--output", str(packed))[0] == 0
    data = packed.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(bytes(flipped))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    for path in (damaged, cut):
        err = refused(cli, fresh_url, path)
        assert "damaged or truncated" in err, err  # exit status 2: refused, not a crash (1)
    assert spaces_named(fresh_url, space.slug) == 0


def test_an_export_into_a_missing_directory_is_refused_plainly(space, pg_url, cli: Cli, tmp_path):
    target = tmp_path / "no-such-directory" / "shop.jsonl"
    code, _, err = cli(pg_url, "export", space.slug, "--output", str(target))
    assert code == 2 and "cannot write" in err, err  # a crash exits 1


def test_an_export_never_writes_through_a_link_planted_at_its_partial_file(
    space, pg_url, cli: Cli, tmp_path
):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    target = tmp_path / "shop.jsonl"
    (tmp_path / "shop.jsonl.partial").symlink_to(victim)
    code, _, err = cli(pg_url, "export", space.slug, "--output", str(target))
    assert code == 0, err
    assert victim.read_text(encoding="utf-8") == "precious"
    assert not target.is_symlink() and target.read_bytes().startswith(b'{"type":"header"')
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


async def test_a_header_slug_no_space_could_have_is_refused(
    exported, fresh_url, cli: Cli, tmp_path
):
    _, lines = exported
    header = json.loads(lines[0])
    header["space"]["slug"] = "../../x"
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(reseal([json.dumps(header).encode(), *lines[1:-1]]))
    assert "line 1: the Space's slug '../../x'" in refused(cli, fresh_url, forged)
    assert spaces_named(fresh_url, "../../x") == 0
