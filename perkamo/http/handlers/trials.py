"""Trying a program (API §7): ``POST /v1/admin/simulate`` and ``/v1/admin/backtests``."""

from __future__ import annotations

from perkamo.http.admin_bodies import BacktestBody, SimulateBody, backtest_input
from perkamo.http.edge import Call, Result
from perkamo.http.responses import BacktestDocument, BacktestList, SimulateResponse
from perkamo.usecases import backtests
from perkamo.usecases.simulate import simulate


async def simulate_events(call: Call[SimulateBody]) -> Result[SimulateResponse]:
    """Evaluate events on a profile's committed state without applying them."""
    key = call.key
    return Result(await simulate(
        call.runtime, key.space_id, key.space_slug, call.body, call.body_size, call.received_at
    ))  # fmt: skip


async def start_backtest(call: Call[BacktestBody]) -> Result[BacktestDocument]:
    program, start, end = backtest_input(call.body)
    document = await backtests.start(call.runtime, call.key.space_id, program, start, end)
    return Result(document, status=202)


async def list_backtests(call: Call[None]) -> Result[BacktestList]:
    return Result(BacktestList(await backtests.listing(call.runtime, call.key.space_id)))


async def read_backtest(call: Call[None]) -> Result[BacktestDocument]:
    job_id = call.params["backtest_id"]
    return Result(await backtests.read(call.runtime, call.key.space_id, job_id))


async def cancel_backtest(call: Call[None]) -> Result[BacktestDocument]:
    job_id = call.params["backtest_id"]
    return Result(await backtests.cancel(call.runtime, call.key.space_id, job_id))
