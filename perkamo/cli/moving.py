"""``perkamo export``, ``perkamo import`` and ``perkamo import-balances``
(docs/operations.md (moving a Space)): a Space moved whole between databases, and customers
brought from another system at a cut-over. The work is in ``perkamo/usecases/moving/``; this
is the command line around it."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from pathlib import Path

import trio

from perkamo.access import admin
from perkamo.cli.operators import cli_actor
from perkamo.cli.progress import ProgressBar
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from perkamo.usecases.moving.balances import read_balances, read_known
from perkamo.usecases.moving.checking import check_file
from perkamo.usecases.moving.export import export_space
from perkamo.usecases.moving.format import MoveRefused, open_output
from perkamo.usecases.moving.opening import Summary, apply_openings, store_known
from perkamo.usecases.moving.restore import import_space
from storage import Database
from storage.console import audit
from storage.database import Conn
from storage.space_tables import space_header


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    export = sub.add_parser("export", help="write a whole Space to a file (JSON Lines)")
    export.add_argument("space")
    export.add_argument(
        "--output", "-o", type=Path, help="the file, mode 0600 (default: stdout); .gz: gzip"
    )
    restore = sub.add_parser("import", help="create a Space from an export (all or nothing)")
    restore.add_argument("file", type=Path)
    restore.add_argument("--space", dest="new_slug", help="create it under this slug instead")
    restore.add_argument(
        "--new-keys",
        action="store_true",
        help="give the copy new API keys (printed once) instead of the file's: for a copy"
        " beside the original in the same database",
    )
    balances = sub.add_parser(
        "import-balances", help="opening balances and known transaction ids from elsewhere"
    )
    balances.add_argument("space")
    balances.add_argument(
        "file",
        type=Path,
        nargs="?",
        help="CSV (user_id,wallet,amount[,earned][,traits][,earned_at][,expires_at]) or"
        " JSON Lines of the same fields",
    )
    balances.add_argument(
        "--known-transactions",
        type=Path,
        metavar="FILE",
        help="ids the old system applied: transaction_id, user_id,transaction_id or"
        " kind,user_id,transaction_id per line (kind: event or redemption)",
    )
    return [export, restore, balances]


def add_space_parsers(
    spaces: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    """``perkamo spaces freeze`` and ``unfreeze`` (run by the ``spaces`` command)."""
    freeze = spaces.add_parser("freeze", help="refuse the Space's writes (503) while it moves")
    freeze.add_argument("slug")
    unfreeze = spaces.add_parser("unfreeze", help="accept the Space's writes again")
    unfreeze.add_argument("slug")
    return [freeze, unfreeze]


def run(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    try:
        if args.command == "export":
            return _export(args, settings, db)
        if args.command == "import":
            return _import(args, settings, db)
        return trio.run(_balances, args, settings, db.url)
    except MoveRefused as exc:
        raise admin.AdminError(str(exc)) from None


def _export(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    with open_output(args.output, sys.stdout.buffer) as sink:
        done = export_space(db.url, args.space, sink, ProgressBar(), settings.timeouts)
    counts = ", ".join(f"{n} {kind}" for kind, n in done.counts.items()) or "nothing"
    state = "frozen: exact" if done.frozen else "not frozen: as of its snapshot"
    print(f"exported {args.space} ({state}): {counts}", file=sys.stderr)
    print(f"sha256 {done.sha256}", file=sys.stderr)

    def record(conn: Conn) -> None:
        space = space_header(conn, args.space)
        target = str(args.output) if args.output else "stdout"
        audit(conn, cli_actor(), "space.export", space.id if space else None, target)

    db.call(record)
    return 0


def _import(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    if args.new_slug is not None:
        admin.check_slug(args.new_slug)
    checked = check_file(args.file)  # the whole file, before anything is written
    done = import_space(
        db.url, args.file, checked, ProgressBar(), settings.timeouts,
        slug=args.new_slug, new_keys=args.new_keys, actor=cli_actor(),
    )  # fmt: skip
    counts = ", ".join(f"{n} {kind}" for kind, n in done.counts.items()) or "nothing"
    print(f"imported Space {done.slug}: {counts}")
    if done.renamed:
        print(f"{done.renamed} undelivered webhook deliveries got new ids (theirs were taken)")
    for key in done.new_keys:
        what = "key" if key.kind == "api_key" else "browser key"
        if key.revoked:
            print(f"{what} {key.old_id} (revoked) is {key.key_id} here, revoked too")
        else:
            print(f"{what} {key.old_id} is replaced by {key.key_id}: {key.secret}")
    if any(not k.revoked for k in done.new_keys):
        print("Store the new keys now: they are shown once and cannot be recovered.")
    return 0


async def _balances(args: argparse.Namespace, settings: Settings, url: str) -> int:
    if args.file is None and args.known_transactions is None:
        raise admin.AdminError("name a balances FILE, --known-transactions FILE, or both")
    actor = f"{getpass.getuser()}@{socket.gethostname()}"
    total = Summary()
    failure: admin.AdminError | None = None
    # A member without an address: rows go to the owners of their customers' shards.
    async with open_runtime(settings, url, member=False) as runtime:
        try:
            space = await runtime.db.run(space_header, args.space)
            if space is None:
                raise admin.AdminError(f"no Space {args.space!r}")
            if args.file is not None:
                bar = ProgressBar()
                bar.start("balances", _lines(args.file) - 1)
                summary = await apply_openings(
                    runtime, space.id, space.limits, read_balances(args.file), actor=actor,
                    done=bar.advance,
                )  # fmt: skip
                bar.finish()
                _report("balances", summary)
                total.add(summary)
            if args.known_transactions is not None:
                bar = ProgressBar()
                bar.start("known transactions", _lines(args.known_transactions))
                summary = await store_known(
                    runtime, space.id, read_known(args.known_transactions), done=bar.advance
                )
                bar.finish()
                _report("known transactions", summary)
                total.add(summary)
            details = {"applied": total.applied, "duplicate": total.duplicate,
                       "refused": len(total.refused)}  # fmt: skip
            source = str(args.file or args.known_transactions)
            await runtime.db.run(
                audit, cli_actor(), "space.import_balances", space.id, source, None, details
            )
        except (admin.AdminError, MoveRefused) as exc:  # outside the runtime's nursery
            failure = admin.AdminError(str(exc))
    if failure is not None:
        raise failure
    return 1 if total.refused else 0


def _lines(path: Path) -> int:
    """The lines of a file (for the progress bar's total); 0 when it cannot be read (the
    reader reports that)."""
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def _report(what: str, summary: Summary) -> None:
    for note in summary.notes:
        print(f"line {note.number}: {note.message}", file=sys.stderr)
    for refused in summary.refused:
        print(f"line {refused.number}: refused: {refused.message}", file=sys.stderr)
    print(
        f"{what}: {summary.applied} applied, {summary.duplicate} duplicate,"
        f" {len(summary.refused)} refused"
    )
