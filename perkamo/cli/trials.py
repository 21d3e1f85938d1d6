"""``perkamo simulate`` and ``perkamo backtest``: docs/api.md (trying a program) from the command
line, through the same code as the endpoints (a runtime of their own on the server's database)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import trio

from perkamo.access import admin
from perkamo.errors import PerkamoError
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import parse_rfc3339
from perkamo.runtime import Runtime, open_runtime
from perkamo.settings import Settings
from perkamo.usecases.backtests import backtest_document
from perkamo.usecases.simulate import simulate_document
from storage import backtests as store
from storage.spaces import SpaceRecord

_encoder = msgspec.json.Encoder(decimal_format="number")
_documents = msgspec.json.Decoder(JsonObject, float_hook=Decimal)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    simulate = sub.add_parser("simulate", help="evaluate events without applying them")
    simulate.add_argument("--space", required=True)
    simulate.add_argument("--user", help="start from this profile (default: an empty one)")
    simulate.add_argument(
        "--events",
        required=True,
        help='a JSON list of events, e.g. \'[{"event": "purchase.completed", "context": '
        '{"amount": 12900}}]\', or @FILE',
    )
    backtest = sub.add_parser("backtest", help="replay history with a candidate program")
    backtest.add_argument("--space", required=True)
    backtest.add_argument("--from", dest="window_from", help="RFC 3339 (received_at >= from)")
    backtest.add_argument("--to", dest="window_to", help="RFC 3339 (received_at < to)")
    for p in (simulate, backtest):
        p.add_argument(
            "--program",
            action="append",
            default=[],
            metavar="MODULE=VERSION",
            help="use this version of a module (repeatable; drafts allowed)",
        )
        p.add_argument("--json", action="store_true", help="print the raw document")
    return [simulate, backtest]


def _program(pairs: list[str]) -> dict[str, str]:
    program = {}
    for pair in pairs:
        module, sep, version = pair.partition("=")
        if not sep or not module or not version:
            raise admin.AdminError(f"--program takes MODULE=VERSION, not {pair!r}")
        program[module] = version
    return program


def _time(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise admin.AdminError(f"{flag}: {exc}") from None


async def run(args: argparse.Namespace, settings: Settings, url: str) -> int:
    failure: admin.AdminError | None = None
    document: JsonObject = {}
    async with open_runtime(settings, url, member=False) as runtime:
        try:
            space = await runtime.db.run(admin.require_space, args.space)
            if args.command == "simulate":
                document = await _simulate(args, runtime, space)
            else:
                document = await _backtest_run(args, runtime, space.id)
        except PerkamoError as exc:
            failure = admin.AdminError(f"{exc.code.value}: {exc}")
        except admin.AdminError as exc:  # raised outside the runtime's nursery, not grouped
            failure = exc
    if failure is not None:
        raise failure
    if args.json:
        print(_encoder.encode(document).decode())
    elif args.command == "simulate":
        _print_simulation(document)
    else:
        _print_report(document)
    return 0 if document.get("status", "done") == "done" else 1


async def _simulate(args: argparse.Namespace, runtime: Runtime, space: SpaceRecord) -> JsonObject:
    text = args.events
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:  # numbers as exact decimals, as the API decodes them
        events = msgspec.json.Decoder(float_hook=Decimal).decode(text)
    except msgspec.DecodeError as exc:
        raise admin.AdminError(f"--events is not JSON: {exc}") from None
    body: JsonObject = {"events": events}
    if args.user:
        body["user_id"] = args.user
    if args.program:
        body["program"] = _program(args.program)
    raw = _encoder.encode(body)
    value = msgspec.json.Decoder(float_hook=Decimal).decode(raw)
    answer = await simulate_document(
        runtime, space.id, space.slug, value, len(raw), datetime.now(UTC)
    )
    return _documents.decode(_encoder.encode(answer))


async def _backtest_run(args: argparse.Namespace, runtime: Runtime, space_id: int) -> JsonObject:
    start, end = _time(args.window_from, "--from"), _time(args.window_to, "--to")
    if start is not None and end is not None and start > end:
        raise admin.AdminError("--to must not be before --from")
    job = await runtime.backtests.start(space_id, _program(args.program), start, end)
    tty = sys.stderr.isatty()
    while True:
        await trio.sleep(0.25)
        current = await runtime.db.run(store.get, space_id, job.id)
        assert current is not None
        done, total = current.events_done, max(current.events_total, 1)
        if tty:
            filled = int(30 * min(done / total, 1))
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{current.events_total:,}"
                  f" events", end="", file=sys.stderr, flush=True)  # fmt: skip
        if current.status != "running":
            if tty:
                print(file=sys.stderr)
            return _documents.decode(_encoder.encode(backtest_document(current)))


def _print_simulation(document: JsonObject) -> None:
    existed = "existing profile" if document["profile_existed"] else "empty profile"
    print(f"simulated on an {existed}; program {document['program_versions']}")
    for n, result in enumerate(document["results"], 1):
        delta = ", ".join(f"{d['wallet']} {d['amount']:+}" for d in result["delta"]) or "-"
        unlocked = ", ".join(f"{u['type']} {u['key']}" for u in result["unlocked"])
        level = result["level"]["level"] if result["level"] else "-"
        print(f"{n:>3}  {delta:<30} level {level:<3} {unlocked}")
    print(f"balances after: {document['profile']['wallets']}")


def _print_report(document: JsonObject) -> None:
    print(f"back-test {document['id']}: {document['status']}")
    if document.get("error"):
        print(f"error: {document['error']}")
    report = document.get("report")
    if not report:
        return
    print(
        f"profiles {report['profiles']}, events {report['events']}, baseline mismatches "
        f"{report['baseline_mismatches']}, redemptions refused {report['redemptions_refused']}"
    )
    _table(["wallet", "awarded (baseline)", "awarded (candidate)", "balance (baseline)",
            "balance (candidate)"],
           [[w, v["baseline_awarded"], v["candidate_awarded"], v["baseline_balance"],
             v["candidate_balance"]] for w, v in report["wallets"].items()])  # fmt: skip
    _table(["rule", "baseline", "candidate"],
           [[k, v["baseline"], v["candidate"]] for k, v in report["rules"].items()])  # fmt: skip
    levels = sorted(set(report["levels"]["baseline"]) | set(report["levels"]["candidate"]), key=int)
    _table(["level", "baseline", "candidate"],
           [[lv, report["levels"]["baseline"].get(lv, 0), report["levels"]["candidate"].get(lv, 0)]
            for lv in levels])  # fmt: skip
    _table(["top change", "wallet", "baseline", "candidate"],
           [[c["user_id"], c["wallet"], c["baseline"], c["candidate"]]
            for c in report["top_changes"]])  # fmt: skip


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> None:
    if not rows:
        return
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print()
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
