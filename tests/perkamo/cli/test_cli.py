"""The operator CLI against real PostgreSQL."""

from __future__ import annotations

import secrets

import pytest

from perkamo.cli.main import main


@pytest.fixture
def cli(pg_url, monkeypatch, capsys):
    monkeypatch.setenv("PERKAMO_DATABASE_URL", pg_url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def key_from(output: str) -> tuple[str, str]:
    lines = dict(line.split(":", 1) for line in output.splitlines() if ":" in line)
    return lines["key id"].strip(), lines["key"].strip()


def test_spaces_and_keys_lifecycle(cli):
    slug = "cli-" + secrets.token_hex(3)
    code, out, _ = cli("spaces", "create", slug, "--name", "CLI Space", "--environment", "live")
    assert code == 0 and f"created Space {slug} (live)" in out
    first_id, first_key = key_from(out)
    assert first_key.startswith("sk_live_")

    code, out, _ = cli("spaces", "list")
    assert code == 0 and f"{slug}\tlive\tCLI Space" in out

    code, out, _ = cli("keys", "create", slug, "--scope", "customer:read")
    reader_id, reader_key = key_from(out)
    code, out, _ = cli("keys", "list", slug)
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[0] for r in rows] == [first_id, reader_id]
    assert rows[1][2] == "profile:read"  # the alias is stored as the scope it stands for
    assert first_key not in out and reader_key not in out  # listings show prefixes only

    code, out, _ = cli("keys", "rotate", first_id)
    assert code == 0
    new_id, new_key = key_from(out.split("replacement:", 1)[1])
    assert new_key != first_key
    code, out, _ = cli("keys", "revoke", reader_id)
    assert code == 0
    code, out, _ = cli("keys", "list", slug)
    states = {line.split("\t")[0]: line.split("\t")[3] for line in out.splitlines()}
    assert states[first_id].startswith("revoked")
    assert states[reader_id].startswith("revoked")
    assert states[new_id] == "active"

    code, out, _ = cli("spaces", "set", slug, "--require-signatures")
    assert code == 0
    code, out, _ = cli("spaces", "list")
    assert f"{slug}\tlive\tCLI Space require-signatures" in out


@pytest.mark.parametrize(
    "argv",
    [
        ("keys", "create", "no-such-space"),
        ("keys", "revoke", "key_missing"),
        ("keys", "rotate", "key_missing"),
        ("spaces", "create", "Bad Slug!"),
        ("spaces", "set", "no-such-space", "--require-signatures"),
    ],
)
def test_operator_mistakes_are_one_line_errors(cli, argv):
    code, out, err = cli(*argv)
    assert code == 2
    assert err.startswith("perkamo: ") and err.count("\n") == 1


def test_unknown_scope_is_refused(cli):
    slug = "cli-" + secrets.token_hex(3)
    cli("spaces", "create", slug)
    code, _, err = cli("keys", "create", slug, "--scope", "everything")
    assert code == 2 and "unknown scope" in err


def test_existing_space_is_refused(cli):
    slug = "cli-" + secrets.token_hex(3)
    assert cli("spaces", "create", slug)[0] == 0
    code, _, err = cli("spaces", "create", slug)
    assert code == 2 and "already exists" in err
