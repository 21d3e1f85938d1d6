"""``perkamo export`` then ``perkamo import`` into another database: the Space comes back
whole — its keys answer with their old secrets, every profile document is equal, every
logged request re-sent is the duplicate of its original, ``perkamo verify`` is clean, and
exporting it again gives the same file but ``exported_at`` and the checksum."""

from __future__ import annotations

import gzip
import secrets
import stat
from pathlib import Path
from urllib.parse import quote

import msgspec
import psycopg
import trio
from psycopg.conninfo import make_conninfo

from perkamo.profiles.replay import replay_profile
from perkamo.profiles.shards import shard_of
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from storage.space_tables import skip_triggers
from tests.api_client import Api, app_for
from tests.perkamo.http.test_auth import signed_headers
from tests.perkamo.moving.conftest import Cli
from tests.perkamo.moving.shop import fill
from tests.perkamo.profiles.test_properties import stored_profile

EVERY_TYPE = {"config", "api_key", "browser_key", "webhook", "profile", "event", "redemption", "identify",
              "adjustment", "reversal", "event_reversal", "known", "usage", "usage_day", "ledger_day", "rule_day",
              "activity_day",
              "delivery"}  # fmt: skip


def lines_of(path: Path) -> list[dict]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return [msgspec.json.decode(line) for line in raw.splitlines()]


async def test_a_space_with_every_kind_of_row_moves_whole_to_another_database(
    api, runtime, space, pg_url, fresh_url, cli: Cli, tmp_path
):
    shop = await fill(api, runtime, space, pg_url)
    before = {u: (await api.get(f"/v1/customer/{quote(u, safe='')}")).body for u in shop.users}
    exported = tmp_path / "shop.jsonl.gz"
    code, _, err = cli(pg_url, "export", space.slug, "--output", str(exported))
    assert code == 0, err
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    first = lines_of(exported)
    assert first[0]["type"] == "header" and first[-1]["type"] == "footer"
    assert set(first[-1]["counts"]) == EVERY_TYPE
    assert first[0]["space"]["slug"] == space.slug and first[0]["format_version"] == 1
    assert not any("secret" in line.get("key", "") for line in first)  # hashes, never keys
    assert [line["active"] for line in first if line["type"] == "config"].count(False) == 1

    code, out, err = cli(fresh_url, "import", str(exported))
    assert code == 0, err
    assert f"imported Space {space.slug}" in out

    again = tmp_path / "again.jsonl"
    assert cli(fresh_url, "export", space.slug, "--output", str(again))[0] == 0
    second = lines_of(again)
    assert {**second[0], "exported_at": None} == {**first[0], "exported_at": None}
    assert second[1:-1] == first[1:-1]
    assert second[-1]["counts"] == first[-1]["counts"]
    assert second[-1]["sha256"] != first[-1]["sha256"]  # the header's time differs

    code, out, _ = cli(fresh_url, "verify", "--space", space.slug)
    assert code == 0 and "ok" in out
    with psycopg.connect(fresh_url) as conn:
        moved_id = conn.execute("SELECT id FROM spaces WHERE slug = %s", (space.slug,)).fetchone()
        assert moved_id is not None
        for user in shop.users:  # the log replays to the stored snapshot
            replayed = replay_profile(conn, moved_id[0], user)
            assert replayed == stored_profile(fresh_url, moved_id[0], user)

    settings = Settings(data_dir=tmp_path / "moved", database_url=None)
    with trio.fail_after(30):
        async with open_runtime(settings, fresh_url) as moved:
            moved_api = Api(app_for(moved), space.key)  # the old secret
            for user in shop.users:
                path = f"/v1/customer/{quote(user, safe='')}"
                assert (await moved_api.get(path)).body == before[user]
            for sent in shop.sent:
                again_answer = await moved_api.post(sent.path, sent.body)
                assert again_answer.status == 200, (sent.path, again_answer.body)
                assert again_answer.body == {**sent.answer, "duplicate": True}
            assert (await moved_api.get("/v1/program", key=shop.revoked_key)).status == 401
            known = {"user_id": "ann", "event": "buy", "transaction_id": "old-1"}
            imported = await moved_api.post("/v1/events", known)
            assert imported.status == 200 and imported.body["imported"] is True
            assert imported.body["delta"] == []


async def test_the_old_key_serves_the_sdk_calls_against_the_imported_space(
    api, runtime, space, pg_url, fresh_url, cli: Cli, tmp_path
):
    """The PHP SDK's calls, signed with the old key, against the Space after the move."""
    await fill(api, runtime, space, pg_url)
    exported = tmp_path / "shop.jsonl"
    assert cli(pg_url, "export", space.slug, "--output", str(exported))[0] == 0
    assert cli(fresh_url, "import", str(exported))[0] == 0
    settings = Settings(data_dir=tmp_path / "moved", database_url=None)
    with trio.fail_after(30):
        async with open_runtime(settings, fresh_url) as moved:
            sdk = Api(app_for(moved), space.key)

            async def signed(path: str, body: dict) -> dict:
                raw = msgspec.json.encode(body)
                headers = signed_headers(space.key, "POST", path, raw)
                answer = await sdk.request("POST", path, data=raw, headers=headers)
                assert answer.status == 200, answer.body
                return answer.body  # type: ignore[no-any-return]

            identified = await signed("/v1/identify", {"user_id": "ann", "traits": {"vip": True}})
            assert identified["created"] is False and identified["traits"]["vip"] is True
            outcome = await signed("/v1/events", {"user_id": "ann", "event": "buy",
                                                  "transaction_id": "after-move",
                                                  "context": {"amount": 5}})  # fmt: skip
            assert outcome["applied"] is True and outcome["duplicate"] is False
            profile = (await sdk.get("/v1/customer/ann")).body
            assert profile["events"][0]["transaction_id"] == "after-move"
            redeemed = await signed(
                "/v1/rewards/redeem",
                {"user_id": "ann", "reward_key": "coupon", "transaction_id": "after-move-r"},
            )
            assert redeemed["redeemed"] is True
            program = (await sdk.get("/v1/program")).body
            assert program["space"]["slug"] == space.slug
            assert program["blueprint"]["earningRules"][0]["event"] == "buy"
            assert (await sdk.get("/v1/usage")).status == 200


async def test_an_import_without_superuser_rights_fires_the_triggers_and_gives_the_same_space(
    api, runtime, space, pg_url, fresh_url, cli: Cli, tmp_path
):
    """As a superuser the import writes the rows alone (no trigger fires); as an ordinary
    role every trigger fires — foreign keys, analytics, notifications — and the Space is
    the same."""
    await fill(api, runtime, space, pg_url)
    exported = tmp_path / "shop.jsonl"
    assert cli(pg_url, "export", space.slug, "--output", str(exported))[0] == 0
    role = "mover_" + secrets.token_hex(3)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    as_role = make_conninfo(fresh_url, user=role)
    try:
        with psycopg.connect(as_role) as conn:
            assert not skip_triggers(conn)  # the path this test is about
        code, _, err = cli(as_role, "import", str(exported))
        assert code == 0, err
        again = tmp_path / "again.jsonl"
        assert cli(fresh_url, "export", space.slug, "--output", str(again))[0] == 0
        assert lines_of(again)[1:-1] == lines_of(exported)[1:-1]
    finally:
        with psycopg.connect(fresh_url, autocommit=True) as conn:
            conn.execute(f"REASSIGN OWNED BY {role} TO postgres")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


async def test_profiles_with_something_due_get_the_shard_of_their_new_space(
    api, space, pg_url, fresh_url, cli: Cli, tmp_path
):
    wallets = {"wallets": [{"key": "points", "name": "Points", "pending_days": 14}]}
    rules = {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                        "award": [{"wallet": "points", "amount": 5}]}]}  # fmt: skip
    body = {"version": "lots", "modules": {"wallets": wallets, "events": rules}}
    assert (await api.post("/v1/admin/config", body)).status == 200
    for user in ("ann", "bob", "carol"):
        event = {"user_id": user, "event": "buy", "transaction_id": f"b-{user}"}
        assert (await api.post("/v1/events", event)).status == 200
    path = tmp_path / "due.jsonl"
    assert cli(pg_url, "export", space.slug, "--output", str(path))[0] == 0
    with psycopg.connect(fresh_url) as conn:  # a Space first, so the copy gets another id
        conn.execute("INSERT INTO spaces (slug, name, environment) VALUES ('other', 'O', 'test')")
    assert cli(fresh_url, "import", str(path))[0] == 0
    with psycopg.connect(fresh_url) as conn:
        rows = conn.execute(
            "SELECT p.space_id, p.user_id, p.due_shard FROM profiles p JOIN spaces s"
            " ON s.id = p.space_id WHERE s.slug = %s AND p.next_due IS NOT NULL",
            (space.slug,),
        ).fetchall()
    assert len(rows) == 3 and rows[0][0] != space.space.id
    assert all(shard == shard_of(space_id, user) for space_id, user, shard in rows)
