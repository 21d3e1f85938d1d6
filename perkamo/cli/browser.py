"""``perkamo browser-keys …`` and ``perkamo tokens rotate-signing-key``: the browser half
(docs/api.md "The browser half") from the command line, through the same use cases as the API and
the console."""

from __future__ import annotations

import argparse

from perkamo.access import admin, tokens
from perkamo.access.browser_keys import PolicyError
from perkamo.cli.operators import cli_actor
from perkamo.usecases import browser
from storage import Database
from storage import browser_keys as store
from storage import signing_keys as signing_store
from storage.browser_keys import BrowserKeyRecord
from storage.console import audit
from storage.database import Conn


def _policy_flags(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    if creating:
        parser.add_argument("--name", required=True)
    else:
        parser.add_argument("--name")
    parser.add_argument(
        "--origin",
        action="append",
        required=creating,
        help="an origin pages may call from, e.g. https://shop.example.com (repeatable;"
        " test Spaces may use http://localhost:*); on update the list is replaced",
    )
    parser.add_argument(
        "--events", help="event keys a page may send, comma-separated, or '*' (every"
        " event the program configures)"
    )  # fmt: skip
    for capability in ("read", "events", "stream"):
        parser.add_argument(
            f"--no-{capability}", action="store_true", help=f"without the {capability} capability"
        )
        if not creating:
            parser.add_argument(
                f"--allow-{capability}",
                action="store_true",
                help=f"with the {capability} capability again",
            )
    parser.add_argument("--rate", type=float, help="events per second per customer (5)")
    parser.add_argument("--burst", type=int, help="bucket size per customer (20)")
    parser.add_argument(
        "--expose-trait", action="append", help="a trait a page may see (repeatable)"
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    keys = sub.add_parser("browser-keys", help="browser keys (public keys for pages)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a browser key (shown once)")
    create.add_argument("space")
    _policy_flags(create, creating=True)
    listing = actions.add_parser("list", help="a Space's browser keys, newest first")
    listing.add_argument("space")
    update = actions.add_parser("update", help="change a browser key's policy")
    update.add_argument("key_id")
    _policy_flags(update, creating=False)
    revoke = actions.add_parser("revoke", help="revoke a browser key (its tokens too, in 1 s)")
    revoke.add_argument("key_id")
    token_cmd = sub.add_parser("tokens", help="the keys that sign browser tokens")
    rotate = token_cmd.add_subparsers(dest="action", required=True).add_parser(
        "rotate-signing-key",
        help="publish a new signing key now; it signs 600 s later, the old one verifies"
        " its tokens until they expire",
    )
    rotate.add_argument("--environment", choices=["test", "live", "both"], default="both")
    rotate.add_argument(
        "--revoke-previous",
        action="store_true",
        help="a compromise: the new key signs at once and the old ones stop verifying now",
    )
    return [create, listing, update, revoke, rotate]


def _given(args: argparse.Namespace) -> dict[str, object]:
    given: dict[str, object] = {}
    if args.name is not None:
        given["name"] = args.name
    if args.origin:
        given["allowed_origins"] = args.origin
    if args.events is not None:
        given["allowed_events"] = [e.strip() for e in args.events.split(",") if e.strip()]
    capabilities = {
        c: False if getattr(args, f"no_{c}") else True
        for c in ("read", "events", "stream")
        if getattr(args, f"no_{c}") or getattr(args, f"allow_{c}", False)
    }
    if capabilities:
        given["capabilities"] = capabilities
    if args.rate is not None or args.burst is not None:
        given["rate"] = {
            k: v for k, v in (("per_second", args.rate), ("burst", args.burst)) if v is not None
        }
    if args.expose_trait:
        given["expose_traits"] = args.expose_trait
    return given


def _show(record: BrowserKeyRecord) -> str:
    state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "active"
    enabled = [c for c in ("read", "events", "stream") if record.capabilities.get(c)]
    return (
        f"{record.id}\t{record.prefix}…\t{record.name}\t{','.join(record.allowed_origins)}\t"
        f"events={','.join(record.allowed_events) or '-'}\t{'+'.join(enabled) or '-'}\t"
        f"rate={record.rate['per_second']}/s burst {record.rate['burst']}\t{state}"
    )


def run(args: argparse.Namespace, db: Database) -> None:
    if args.command == "tokens":
        _rotate(args, db)
        return
    actor = cli_actor()
    try:
        if args.action == "create":

            def create(conn: Conn) -> tuple[BrowserKeyRecord, str]:
                space = admin.require_space(conn, args.space)
                made = browser.create_key(conn, space.id, space.environment, _given(args), actor)
                return made.record, made.key

            record, key = db.call(create)
            print(_show(record))
            print(f"key:    {key}")
            print("Store the key now: it is shown once. It is public: it ships in your pages.")
        elif args.action == "list":
            space = db.call(admin.require_space, args.space)
            for record in db.call(store.list_of_space, space.id):
                print(_show(record))
        elif args.action == "update":

            def update(conn: Conn) -> BrowserKeyRecord | None:
                found = store.get(conn, args.key_id)
                if found is None:
                    return None
                return browser.update_key(conn, found.space_id, args.key_id, _given(args), actor)

            changed = db.call(update)
            if changed is None:
                raise admin.AdminError(f"no browser key {args.key_id!r}")
            print(_show(changed))
        elif args.action == "revoke":

            def revoke(conn: Conn) -> BrowserKeyRecord | None:
                found = store.get(conn, args.key_id)
                return None if found is None else browser.revoke_key(
                    conn, found.space_id, args.key_id, actor
                )  # fmt: skip

            revoked = db.call(revoke)
            if revoked is None:
                raise admin.AdminError(f"no browser key {args.key_id!r}")
            print(f"revoked {revoked.id} ({revoked.prefix}…); its tokens stop working within 1 s")
    except PolicyError as exc:
        raise admin.AdminError(str(exc)) from None


def _rotate(args: argparse.Namespace, db: Database) -> None:
    environments = ["test", "live"] if args.environment == "both" else [args.environment]
    for environment in environments:
        kid = db.call(_rotate_one, environment, args.revoke_previous)
        if args.revoke_previous:
            print(f"{environment}: {kid} signs now; every earlier key stopped verifying")
        else:
            print(
                f"{environment}: {kid} published (JWKS) now and signs in "
                f"{tokens.SIGNING_DELAY:.0f} s; the previous key verifies its tokens until "
                f"they expire ({tokens.KEEP_VERIFYING:.0f} s after that)"
            )


def _rotate_one(conn: Conn, environment: str, revoke_previous: bool) -> str:
    kid, private, public = tokens.new_key_pair()
    signing_store.rotate(
        conn, environment, kid, private, public, delay_seconds=tokens.SIGNING_DELAY,
        keep_seconds=tokens.KEEP_VERIFYING, revoke_previous=revoke_previous,
    )  # fmt: skip
    details = {"environment": environment, "revoke_previous": revoke_previous}
    audit(conn, cli_actor(), "signing_key.rotate", None, kid, details=details)
    return kid
