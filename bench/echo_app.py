"""The framework ceiling: a minimal quart-trio JSON echo app on the same hypercorn settings
as ``perkamo serve`` (trio worker, one process, our own ``trio.run``).

    python -m bench.echo_app PORT
"""

from __future__ import annotations

import functools
import signal
import sys

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio("echo")
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@app.route("/echo", methods=["POST"])
async def echo() -> Response:
    body = _decoder.decode(await request.get_data(cache=False, as_text=False))
    return Response(_encoder.encode(body), content_type="application/json")


async def main(port: int) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = trio.Event()

    async def on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_signal)
        await serve(app, config, shutdown_trigger=stop.wait)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(functools.partial(main, int(sys.argv[1])))
