"""Route handlers: thin — validate the body, ask the profile actor, shape the answer.

One module for every route of API.md on purpose (about 460 lines): each handler is short,
and reading them side by side shows the contract's shape; splitting by route would scatter
the shared checks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from perkamo.configuration import versions
from perkamo.configuration.versions import candidate_program
from perkamo.errors import Code, PerkamoError
from perkamo.http import requests
from perkamo.http.edge import Call, Plain, RawBody, rate_limited, rate_of
from perkamo.http.errors import item_error
from perkamo.http.profile_document import profile_document
from perkamo.http.program_document import program_document, usage_document
from perkamo.http.requests import (
    EventInput,
    adjust_input,
    backtest_input,
    batch_items,
    check_tenants,
    check_transaction_id,
    check_user_id,
    event_input,
    identify_body,
    redeem_input,
    reverse_input,
    simulate_input,
    tenants_named,
)
from perkamo.http.responses import (
    BacktestDocument,
    BacktestList,
    BacktestProgress,
    BatchItem,
    BatchResponse,
    EventOutcome,
    Health,
    IdentifyResponse,
    ModuleActivation,
    ModuleDescription,
    ModulesUploaded,
    ModuleUploaded,
    ModuleVersion,
    SimulatedOutcome,
    SimulateResponse,
)
from perkamo.profiles import (
    Adjust,
    EventRequest,
    Identify,
    IdentifyResult,
    Ingest,
    ProfileView,
    Read,
    Redeem,
    Reverse,
)
from perkamo.profiles.history import RECENT, read_recent
from perkamo.profiles.paths import WALLETS
from perkamo.profiles.snapshot import Snapshot
from perkamo.program import MODULES
from perkamo.program.support import check_adjustment
from perkamo.program.timefmt import format_rfc3339
from perkamo.runtime import Pending, Runtime
from perkamo.trials.simulate import SimulatedEvent, simulate
from storage import backtests as backtest_store
from storage.backtests import Job
from storage.stats import space_stats
from storage.support import redemption_owner

Result = tuple[int, Any]
log = logging.getLogger(__name__)

MAX_FUTURE = timedelta(minutes=5)


def _check_not_future(event: EventInput, received_at: datetime, prefix: str = "") -> None:
    if event.occurred_at is not None and event.occurred_at > received_at + MAX_FUTURE:
        raise PerkamoError(
            Code.OCCURRED_AT_IN_FUTURE,
            "occurred_at is more than 5 minutes in the future.",
            details=[{"path": prefix + "occurred_at", "message": "in the future"}],
        )


async def identify(call: Call) -> Result:
    user_id, traits = identify_body(call.body)
    reply = await call.runtime.ask(
        (call.key.space_id, user_id),
        Identify(traits, call.received_at, call.key.space_limits),
        writes=True,
    )
    assert isinstance(reply, IdentifyResult)
    return 200, IdentifyResponse(call.key.space_slug, user_id, reply.traits, reply.created)


def _ingest(event: EventInput, call: Call) -> Ingest:
    request = EventRequest(event.transaction_id, event.event, event.context, event.occurred_at)
    return Ingest(request, call.received_at, call.key.space_limits)


async def ingest_event(call: Call) -> Result:
    try:
        event = event_input(call.body, body_size=call.body_size)
        _check_not_future(event, call.received_at)
        answer = await call.runtime.ask(
            (call.key.space_id, event.user_id), _ingest(event, call), writes=True
        )
    except PerkamoError as exc:
        _record(call, call.body, exc)
        raise
    _record(call, event, answer)
    return 200, answer


def _record(call: Call, event: Any, outcome: Any) -> None:
    """A duplicate or a refusal, for the console's Events screen (perkamo/attempts.py)."""
    if isinstance(outcome, PerkamoError):
        status, code, message = "refused", outcome.code.value, str(outcome)
    elif isinstance(outcome, EventOutcome) and outcome.duplicate:
        status, code, message = "duplicate", None, None
    else:
        return
    fields = event if isinstance(event, dict) else {}

    def text(name: str) -> str | None:
        value = getattr(event, name, None) if not fields else fields.get(name)
        return value[:256] if isinstance(value, str) else None

    call.runtime.attempts.record(
        call.key.space_id, call.received_at, text("transaction_id"), text("user_id"),
        text("event"), status, code, message, call.request_id,
    )  # fmt: skip


def _failed(exc: PerkamoError) -> BatchItem:
    """A batch item that failed alone: nothing applied, and why."""
    return BatchItem(
        applied=False,
        duplicate=False,
        delta=[],
        leveled_up=False,
        unlocked=[],
        wallet_state={},
        level=None,
        error=item_error(exc),
    )


async def ingest_batch(call: Call) -> Result:
    """Each item succeeds or fails on its own, whatever happens to its neighbours. Items are
    admitted in list order, so one user's items apply in that order; different users
    proceed in parallel. An item reusing the transaction id of an earlier item for another
    user waits for that item to settle, so the later one is the duplicate or the conflict.
    A batch takes one rate-limit token per item; all its items share one deadline."""
    batch = batch_items(call.body)
    runtime = call.runtime
    if len(batch.events) > 1:  # the edge took the first token
        decision = runtime.rate_limiter.take(
            call.key.id, *rate_of(call.key), cost=len(batch.events) - 1
        )
        if not decision.allowed:
            raise rate_limited(decision)
    results: list[Any] = [None] * len(batch.events)  # the answer or the item's error
    waves: list[list[tuple[int, EventInput]]] = [[]]
    owner_of: dict[str, tuple[str, int]] = {}  # transaction id -> (user, wave)
    for index, item in enumerate(batch.events):
        prefix = f"events[{index}]."
        try:
            check_tenants(tenants_named(item), call.key.space_slug)
            event = event_input(item, prefix, call.body_size)
            _check_not_future(event, call.received_at, prefix)
        except PerkamoError as exc:
            results[index] = exc.with_traceback(None)  # kept: no cycle through this frame
            continue
        wave = 0
        if (seen := owner_of.get(event.transaction_id)) is not None:
            wave = seen[1] + (seen[0] != event.user_id)
        owner_of[event.transaction_id] = (event.user_id, wave)
        while len(waves) <= wave:
            waves.append([])
        waves[wave].append((index, event))
    deadline = runtime.deadline()
    for wave_items in waves:
        key = call.key.space_id
        pending = runtime.submit_many([((key, e.user_id), _ingest(e, call)) for _, e in wave_items])
        submitted: list[int] = []
        replies: list[Pending] = []
        for (index, _), admitted in zip(wave_items, pending, strict=True):
            if isinstance(admitted, PerkamoError):  # no room: overloaded, or shutting down
                results[index] = admitted
            else:
                submitted.append(index)
                replies.append(admitted)
        answers = await runtime.outcomes(replies, writes=True, deadline=deadline)
        for index, answer in zip(submitted, answers, strict=True):
            results[index] = answer
    for item, result in zip(batch.events, results, strict=True):
        _record(call, item, result)
    # A successful item is exactly the single event's answer (API.md), encoded once by the
    # profile actor; BatchItem documents both forms.
    return 200, BatchResponse([_failed(r) if isinstance(r, PerkamoError) else r for r in results])


async def profile(call: Call) -> Result:
    user_id = check_user_id(call.params["user_id"])
    view = await call.runtime.ask((call.key.space_id, user_id), Read(), writes=False)
    if view is None:
        raise PerkamoError(Code.PROFILE_NOT_FOUND, f"No profile with user_id {user_id!r}.")
    assert isinstance(view, ProfileView)
    program = await call.runtime.programs.get(call.key.space_id)
    return 200, profile_document(call.key.space_slug, user_id, view, program, datetime.now(UTC))


async def redeem_reward(call: Call) -> Result:
    user_id, reward_key, transaction_id, context = redeem_input(call.body)
    message = Redeem(reward_key, transaction_id, context, call.received_at, call.key.space_limits)
    reply = await call.runtime.ask((call.key.space_id, user_id), message, writes=True)
    return 200, reply


async def adjust(call: Call) -> Result:
    """A support agent's balance adjustment (API.md §8), through the profile's actor."""
    body = adjust_input(call.body)
    program = await call.runtime.programs.get(call.key.space_id)
    check_adjustment(program, body.wallet, body.amount)  # 400 before the profile's 404
    message = Adjust(
        body.transaction_id, body.wallet, body.amount, body.counts_toward_level, body.reason,
        body.actor, call.received_at, call.key.space_limits, audit=f"api:{call.key.prefix}",
    )  # fmt: skip
    return 200, await call.runtime.ask((call.key.space_id, body.user_id), message, writes=True)


async def reverse_redemption(call: Call) -> Result:
    """Reverse a redemption (API.md §8): routed to the profile that owns it."""
    transaction_id = check_transaction_id(call.params["transaction_id"])
    body = reverse_input(call.body)
    owner = await call.runtime.db.run(redemption_owner, call.key.space_id, transaction_id)
    if owner is None:
        raise PerkamoError(
            Code.REDEMPTION_NOT_FOUND, f"No redemption with transaction_id {transaction_id!r}."
        )
    message = Reverse(transaction_id, body.reason, body.actor, call.received_at,
                      call.key.space_limits, audit=f"api:{call.key.prefix}")  # fmt: skip
    return 200, await call.runtime.ask((call.key.space_id, owner), message, writes=True)


async def simulate_events(call: Call) -> Result:
    """API.md §7: evaluate events on a profile's committed state without applying them."""
    key = call.key
    document = await simulate_document(
        call.runtime, key.space_id, key.space_slug, call.body, call.body_size, call.received_at
    )
    return 200, document


async def simulate_document(
    runtime: Runtime,
    space_id: int,
    space_slug: str,
    value: Any,
    body_size: int | None,
    received_at: datetime,
) -> SimulateResponse:
    """The simulation of a request body (also for ``perkamo simulate``)."""
    body, events = simulate_input(value, body_size)
    for index, (event, _, occurred_at) in enumerate(events):
        check_tenants([t for t in (event.tenant, event.space) if t], space_slug)
        if occurred_at is not None and occurred_at > received_at + MAX_FUTURE:
            raise PerkamoError(
                Code.OCCURRED_AT_IN_FUTURE,
                "occurred_at is more than 5 minutes in the future.",
                details=[{"path": f"events[{index}].occurred_at", "message": "in the future"}],
            )
    if body.program:
        program = await runtime.db.run(candidate_program, space_id, body.program)
    else:
        program = await runtime.programs.get(space_id)
    snapshot = Snapshot.from_row(None)
    if body.user_id is not None:
        snapshot = await runtime.committed((space_id, body.user_id))
    existed = snapshot.exists
    traits = snapshot.traits()
    trial = simulate(
        snapshot.state(),
        traits,
        [SimulatedEvent(e.event, context, at, e.transaction_id) for e, context, at in events],
        program,
        received_at,
    )
    recent: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    if existed and body.user_id is not None:
        recent = await runtime.db.run(read_recent, space_id, body.user_id, RECENT)
    view = ProfileView(
        traits,
        trial.state,
        snapshot.created_at or received_at,
        received_at,
        (trial.history + recent[0])[:RECENT],
        recent[1],
        recent[2],
    )
    document = profile_document(space_slug, body.user_id or "", view, program, datetime.now(UTC))
    results = [
        SimulatedOutcome(
            o.applied,
            o.delta,
            o.leveled_up,
            o.unlocked,
            o.wallet_state,
            o.level,
            o.skipped,
            o.breakdown,
            o.program_versions,
        )  # fmt: skip
        for o in trial.outcomes
    ]
    return SimulateResponse(existed, program.versions, results, document)


def backtest_document(job: Job) -> BacktestDocument:
    return BacktestDocument(
        id=job.id,
        status=job.status,
        created_at=format_rfc3339(job.created_at),
        finished_at=_time(job.finished_at),
        program=job.program,
        from_=_time(job.window_from),
        to=_time(job.window_to),
        progress=BacktestProgress(job.events_done, job.events_total),
        report=job.report,
        error=job.error,
    )


async def start_backtest(call: Call) -> Result:
    program, start, end = backtest_input(call.body)
    job = await call.runtime.backtests.start(call.key.space_id, program, start, end)
    return 202, backtest_document(job)


async def list_backtests(call: Call) -> Result:
    jobs = await call.runtime.db.run(backtest_store.list_jobs, call.key.space_id)
    return 200, BacktestList([backtest_document(job) for job in jobs])


async def read_backtest(call: Call) -> Result:
    job_id = call.params["backtest_id"]
    job = await call.runtime.db.run(backtest_store.get, call.key.space_id, job_id)
    if job is None:
        raise PerkamoError(Code.BACKTEST_NOT_FOUND, f"No back-test {job_id!r}.")
    return 200, backtest_document(job)


async def cancel_backtest(call: Call) -> Result:
    job = await call.runtime.backtests.cancel(call.key.space_id, call.params["backtest_id"])
    return 200, backtest_document(job)


async def usage(call: Call) -> Result:
    meters = await call.runtime.usage.meters(
        call.key.space_id, call.received_at, call.key.space_limits
    )
    return 200, usage_document(call.key.space_slug, meters)


def _time(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value is not None else None


async def upload_module(call: Call) -> Result:
    module = call.params["module"]
    if module not in MODULES:
        raise PerkamoError(Code.UNKNOWN_MODULE, f"Unknown configuration module {module!r}.")
    request = requests.envelope(call.body, requests.ModuleUpload)
    stored, program = await call.runtime.db.run(
        versions.store,
        call.key.space_id,
        request.version,
        {module: request.body},
        request.active,
        "body",
        f"api:{call.key.prefix}",
    )
    if program is not None:
        call.runtime.programs.install(call.key.space_id, program)
    item = stored[0]
    return 200, ModuleUploaded(
        module, item.version, item.active, item.checksum, _time(item.activated_at), []
    )


async def upload_modules(call: Call) -> Result:
    request = requests.envelope(call.body, requests.ModulesUpload)
    stored, program = await call.runtime.db.run(
        versions.store,
        call.key.space_id,
        request.version,
        request.modules,
        request.active,
        "modules.{module}",
        f"api:{call.key.prefix}",
    )
    if program is not None:
        call.runtime.programs.install(call.key.space_id, program)
    activations = {
        item.module: ModuleActivation(item.checksum, _time(item.activated_at)) for item in stored
    }
    return 200, ModulesUploaded(request.version, request.active, activations, [])


async def read_module(call: Call) -> Result:
    module = call.params["module"]
    active, stored = await call.runtime.db.run(versions.describe_module, call.key.space_id, module)
    return 200, ModuleDescription(
        module=module,
        active_version=active.version if active else None,
        versions=[
            ModuleVersion(
                v.version, v.checksum, format_rfc3339(v.created_at), _time(v.activated_at)
            )
            for v in stored
        ],
        body=active.body if active else None,
    )


async def read_program(call: Call) -> Result:
    now = datetime.now(UTC)
    program = await call.runtime.programs.get(call.key.space_id)
    stats = await call.runtime.db.run(space_stats, call.key.space_id, now, WALLETS)
    meters = await call.runtime.usage.meters(call.key.space_id, now, call.key.space_limits)
    usage = usage_document(call.key.space_slug, meters)
    return 200, program_document(call.key, program, stats, usage, meters)


async def not_supported(_: object) -> Result:
    raise PerkamoError(
        Code.NOT_SUPPORTED,
        "This endpoint is a Perkamo preview feature that this server does not offer yet.",
    )


async def metrics(plain: Plain) -> Result:
    return 200, RawBody(plain.metrics.render(), plain.metrics.content_type)


async def healthz(plain: Plain) -> Result:
    return 200, Health("ok")


async def readyz(plain: Plain) -> Result:
    """Ready: accepting work and storage answering (a background probe's latest verdict,
    so this never waits behind the load it reports on)."""
    runtime = plain.runtime
    if runtime.stopping or runtime.actors.closed:
        raise PerkamoError(Code.SHUTTING_DOWN, "The server is shutting down.")
    if not runtime.health.ready():
        raise PerkamoError(Code.STORAGE_UNAVAILABLE, "Storage is unavailable.")
    return 200, Health("ready")
