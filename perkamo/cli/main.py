"""The ``perkamo`` command: the server and the operator's tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import trio

from perkamo.access import admin
from perkamo.access.limits import InvalidLimit, parse_limit
from perkamo.cli import adjustments, browser, doctor, moving, operators, trials
from perkamo.cli.cluster import cluster_status
from perkamo.server.logs import configure as configure_logs
from perkamo.settings import Settings, SettingsError, parse_workers
from storage import Database, EmbeddedPostgres, StorageUnavailable
from storage import spaces as space_store
from storage.console import audit
from storage.database import Conn
from storage.migrations import migrate
from storage.spaces import KeyRecord


def _add_storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="PostgreSQL URL (env PERKAMO_DATABASE_URL)")
    parser.add_argument("--data-dir", type=Path, help="data directory (env PERKAMO_DATA_DIR)")
    parser.add_argument("--log-level", help="debug|info|warning|error (env PERKAMO_LOG_LEVEL)")


def _add_server_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``perkamo serve`` and ``perkamo cluster status``."""
    serve = sub.add_parser("serve", help="run the HTTP server")
    _add_storage_flags(serve)
    serve.add_argument("--host", help="listen address (env PERKAMO_HOST, default localhost)")
    serve.add_argument("--port", type=int, help="listen port (env PERKAMO_PORT, default 4001)")
    serve.add_argument(
        "--demo", action="store_true", help="create the demo Space commerce-test and a key"
    )
    serve.add_argument(
        "--workers",
        type=parse_workers,
        help="member processes on this host sharing the port, or auto (one per core);"
        " env PERKAMO_WORKERS, default 1",
    )
    serve.add_argument(
        "--max-streams",
        type=int,
        help="live streams one process holds at most (env PERKAMO_MAX_STREAMS, default 20000)",
    )
    serve.add_argument(
        "--cluster-address",
        help="HOST:PORT other members reach this one's internal port at"
        " (env PERKAMO_CLUSTER_ADDRESS, default 127.0.0.1:0 = a free port on loopback)",
    )

    cluster = sub.add_parser("cluster", help="the members sharing this database").add_subparsers(
        dest="action", required=True
    )
    status = cluster.add_parser("status", help="members, addresses, shards held, heartbeats")
    _add_storage_flags(status)


def _add_space_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    spaces = sub.add_parser("spaces", help="manage Spaces").add_subparsers(
        dest="action", required=True
    )
    create = spaces.add_parser("create", help="create a Space")
    create.add_argument("slug")
    create.add_argument("--name")
    create.add_argument("--environment", choices=["test", "live"], default="test")
    listing = spaces.add_parser("list", help="list Spaces")
    setting = spaces.add_parser("set", help="change a Space's settings")
    setting.add_argument("slug")
    group = setting.add_mutually_exclusive_group(required=True)
    group.add_argument("--require-signatures", action="store_true", default=None)
    group.add_argument("--no-require-signatures", dest="require_signatures", action="store_false")
    limits = spaces.add_parser(
        "set-limits", help="usage limits per calendar month and the API-key rate limit"
    )
    limits.add_argument("slug")
    for meter in ("events", "profiles", "redemptions", "api-requests"):
        limits.add_argument(f"--{meter}", metavar="N|none", help=f"monthly {meter} limit")
    limits.add_argument("--rate", metavar="N|none", help="requests per second per key")
    limits.add_argument("--burst", metavar="N|none", help="token bucket size per key")
    for p in (create, listing, setting, limits, *moving.add_space_parsers(spaces)):
        _add_storage_flags(p)


def _add_key_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    kcreate = keys.add_parser("create", help="create a key (shown once)")
    kcreate.add_argument("space")
    kcreate.add_argument(
        "--scope",
        action="append",
        help="a scope (repeatable; default: all): events:write, profile:read, "
        "rewards:redeem, admin:config, admin:support",
    )
    klist = keys.add_parser("list", help="list a Space's keys")
    klist.add_argument("space")
    krevoke = keys.add_parser("revoke", help="revoke a key (effective within a second)")
    krevoke.add_argument("key_id")
    krotate = keys.add_parser("rotate", help="issue a replacement key and revoke the old one")
    krotate.add_argument("key_id")
    for p in (kcreate, klist, krevoke, krotate):
        _add_storage_flags(p)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perkamo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    _add_server_parsers(sub)

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    _add_storage_flags(mig)

    _add_space_parsers(sub)

    hooks = sub.add_parser("webhooks", help="the Space's webhook endpoint").add_subparsers(
        dest="action", required=True
    )
    hset = hooks.add_parser("set", help="set (or replace) the endpoint; prints a new secret")
    hset.add_argument("space")
    hset.add_argument("url")
    hshow = hooks.add_parser("show", help="show the endpoint")
    hshow.add_argument("space")
    hoff = hooks.add_parser("disable", help="stop delivering")
    hoff.add_argument("space")
    hlist = hooks.add_parser("deliveries", help="recent deliveries and their state")
    hlist.add_argument("space")
    hlist.add_argument("--limit", type=int, default=20)
    for p in (hset, hshow, hoff, hlist):
        _add_storage_flags(p)

    doctor = sub.add_parser(
        "doctor", help="whether an acknowledged write survives losing the primary (exit 1 if not)"
    )
    _add_storage_flags(doctor)

    verify = sub.add_parser("verify", help="recompute balances from the ledger and compare")
    verify.add_argument("--space", help="only this Space (default: all)")
    _add_storage_flags(verify)

    _add_key_parsers(sub)
    parsers = (
        *adjustments.add_parsers(sub), *trials.add_parsers(sub), *operators.add_parsers(sub),
        *browser.add_parsers(sub), *moving.add_parsers(sub),
    )  # fmt: skip
    for p in parsers:
        _add_storage_flags(p)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings, overridden by the flags given."""
    flags = (
        "database_url", "data_dir", "log_level", "host", "port", "workers", "cluster_address",
        "max_streams",
    )  # fmt: skip
    return Settings.from_env(os.environ, **{name: getattr(args, name, None) for name in flags})


@contextmanager
def _database(settings: Settings, *, migrated: bool = True) -> Iterator[Database]:
    """A database for one operator command: the configured URL, or the embedded server
    (started if no server is running it, and stopped again if this command started it);
    migrated unless the command only reads the server's state."""
    embedded = None
    url = settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir / "pgdata")
        url = embedded.start()
    db = Database(url, min_size=1, max_size=1, timeouts=settings.timeouts)
    try:
        db.open()
        if migrated:
            db.call(migrate)
        yield db
    finally:
        db.close()
        if embedded is not None:
            embedded.stop()


def _print_key(key_id: str, secret: str) -> None:
    print(f"key id: {key_id}")
    print(f"key:    {secret}")
    print("Store the key now: it is shown once and cannot be recovered.")


def _run_spaces(args: argparse.Namespace, db: Database) -> None:
    if args.action == "create":
        space = db.call(admin.create_space, args.slug, args.name, args.environment)
        key_id, secret = db.call(admin.create_key, space)
        print(f"created Space {space.slug} ({space.environment})")
        _print_key(key_id, secret)
    elif args.action == "list":
        for space in db.call(space_store.list_spaces):
            signed = " require-signatures" if space.require_signatures else ""
            print(f"{space.slug}\t{space.environment}\t{space.name}{signed}")
    elif args.action == "set":
        if not db.call(space_store.set_require_signatures, args.slug, args.require_signatures):
            raise admin.AdminError(f"no Space {args.slug!r}")
        print(f"{args.slug}: require signatures = {args.require_signatures}")
    elif args.action in ("freeze", "unfreeze"):
        frozen = args.action == "freeze"
        if not db.call(space_store.set_frozen, args.slug, frozen):
            raise admin.AdminError(f"no Space {args.slug!r}")
        if frozen:
            print(f"{args.slug}: frozen (writes answer 503 space_frozen; reads go on)")
        else:
            print(f"{args.slug}: unfrozen")
    elif args.action == "set-limits":
        changes = {}
        for option, name in (
            ("events", "events"),
            ("profiles", "profiles"),
            ("redemptions", "redemptions"),
            ("api_requests", "api_requests"),
            ("rate", "rate"),
            ("burst", "burst"),
        ):
            value = getattr(args, option)
            if value is not None:
                changes[name] = _limit(name, value)
        if not changes:
            raise admin.AdminError("name at least one limit, e.g. --events 100000")
        limits = db.call(space_store.set_limits, args.slug, changes)
        if limits is None:
            raise admin.AdminError(f"no Space {args.slug!r}")
        shown = ", ".join(f"{k}={v}" for k, v in sorted(limits.items())) or "none"
        print(f"{args.slug}: limits {shown}")


def _limit(name: str, value: str) -> int | None:
    try:
        return parse_limit(name, value)
    except InvalidLimit as exc:
        raise admin.AdminError(str(exc)) from None


def _run_verify(args: argparse.Namespace, db: Database) -> int:
    from perkamo.profiles.verify import verify_space

    spaces = (
        [db.call(admin.require_space, args.space)]
        if args.space
        else db.call(space_store.list_spaces)
    )
    bad = 0
    for space in spaces:
        report = db.call(verify_space, space)
        for m in report.mismatches:
            print(
                f"MISMATCH {m.space} {m.user_id!r} {m.wallet} {m.what}:"
                f" stored {m.stored}, ledger {m.ledger}"
            )
        bad += len(report.mismatches)
        state = "ok" if not report.mismatches else f"{len(report.mismatches)} mismatch(es)"
        print(f"{space.slug}: {report.profiles} profiles verified, {state}")
    return 1 if bad else 0


def _run_webhooks(args: argparse.Namespace, db: Database) -> None:
    from storage import webhooks as hook_store

    actor = operators.cli_actor()
    if args.action == "set":

        def set_(conn: Conn) -> str:
            secret = admin.set_webhook(conn, args.space, args.url)
            space = admin.require_space(conn, args.space)
            audit(conn, actor, "webhook.set", space.id, args.url)
            return secret

        secret = db.call(set_)
        print(f"webhook for {args.space}: {args.url}")
        print(f"signing secret: {secret}")
        print("Store the secret now: it is shown once. Receivers verify")
        print(
            "x-perkamo-webhook-signature = v1=HMAC-SHA256(secret, '<x-perkamo-delivery>.<body>')."
        )
        return
    space = db.call(admin.require_space, args.space)
    if args.action == "show":
        endpoint = db.call(hook_store.endpoints, [space.id]).get(space.id)
        if endpoint is None:
            print(f"{args.space}: no webhook endpoint")
        else:
            state = "enabled" if endpoint.enabled else "disabled"
            print(f"{args.space}: {endpoint.url} ({state}), secret {endpoint.secret[:10]}…")
    elif args.action == "disable":

        def off(conn: Conn) -> bool:
            done = hook_store.disable_endpoint(conn, space.id)
            if done:
                audit(conn, actor, "webhook.disable", space.id)
            return done

        if not db.call(off):
            raise admin.AdminError(f"{args.space} has no webhook endpoint")
        print(f"{args.space}: webhook disabled")
    elif args.action == "deliveries":
        for d in db.call(hook_store.list_deliveries, space.id, args.limit):
            last = (
                f"HTTP {d.last_status_code} {d.last_status_text or ''}".strip()
                if d.last_status_code is not None
                else (d.last_error or "-")
            )
            print(
                f"{d.id}\t{d.event_type}\t{d.status}\tattempts={d.attempts}\t"
                f"{d.created_at:%Y-%m-%d %H:%M:%S}\t{last}\t{d.last_duration_ms or 0} ms"
            )


def _run_keys(args: argparse.Namespace, db: Database) -> None:
    actor = operators.cli_actor()
    if args.action == "create":

        def create(conn: Conn) -> tuple[str, str]:
            space = admin.require_space(conn, args.space)
            key_id, secret = admin.create_key(conn, space, args.scope)
            audit(conn, actor, "key.create", space.id, key_id)
            return key_id, secret

        _print_key(*db.call(create))
    elif args.action == "list":
        db.call(admin.require_space, args.space)
        for key in db.call(space_store.list_keys, args.space):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            print(f"{key.id}\t{key.prefix}…\t{','.join(key.scopes)}\t{state}")
    elif args.action == "revoke":

        def revoke(conn: Conn) -> KeyRecord:
            record = admin.revoke_key(conn, args.key_id)
            audit(conn, actor, "key.revoke", record.space_id, record.id)
            return record

        record = db.call(revoke)
        print(f"revoked {record.id} ({record.prefix}…) of Space {record.space_slug}")
    elif args.action == "rotate":

        def rotate(conn: Conn) -> tuple[str, str]:
            new = admin.rotate_key(conn, args.key_id)
            found = space_store.get_key(conn, args.key_id)
            audit(conn, actor, "key.rotate", found.space_id if found else None, args.key_id,
                  details={"new_key": new[0]})  # fmt: skip
            return new

        key_id, secret = db.call(rotate)
        print(f"revoked {args.key_id}; its replacement:")
        _print_key(key_id, secret)


def _serve(settings: Settings, *, demo: bool) -> int:
    from perkamo.server.server import WORKER_OF, CannotListen, serve
    from perkamo.server.workers import WorkerFailed, supervise

    if settings.workers > 1 and WORKER_OF not in os.environ:
        if settings.port == 0:
            print("perkamo: several workers need a fixed --port (they share it)", file=sys.stderr)
            return 2
        return _run_server(lambda: supervise(settings, demo=demo), WorkerFailed)
    return _run_server(lambda: serve(settings, demo=demo), CannotListen)


def _run_server(run: Callable[[], Awaitable[object]], reported: type[Exception]) -> int:
    """Run the server; a ``reported`` failure (however deep in exception groups) is printed
    as one line and exits 1, anything else is a defect and raises."""
    try:
        trio.run(run)
    except reported as exc:
        print(f"perkamo: {exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        matched = group.subgroup(reported)
        if matched is None:
            raise
        first: BaseException = matched
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        print(f"perkamo: {first}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"perkamo: {exc}", file=sys.stderr)
        return 2
    configure_logs(settings.log_level)
    try:
        if args.command == "serve":
            return _serve(settings, demo=args.demo)
        runners: dict[str, Callable[[argparse.Namespace, Database], object]] = {
            "spaces": _run_spaces,
            "keys": _run_keys,
            "migrate": lambda _args, _db: print("migrations applied"),
            "webhooks": _run_webhooks,
            "operators": operators.run,
            "cluster": cluster_status,
            "browser-keys": browser.run,
            "tokens": browser.run,
        }
        if args.command == "doctor":
            with _database(settings, migrated=False) as db:
                return doctor.run(db)
        with _database(settings) as db:
            if args.command == "verify":
                return _run_verify(args, db)
            if args.command in ("adjust", "reverse", "reverse-event"):
                return trio.run(adjustments.run, args, settings, db.url)
            if args.command in ("simulate", "backtest"):
                return trio.run(trials.run, args, settings, db.url)
            if args.command in ("export", "import", "import-balances"):
                return moving.run(args, settings, db)
            runners[args.command](args, db)
        return 0
    except admin.AdminError as exc:
        print(f"perkamo: {exc}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        print(f"perkamo: storage unavailable: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
