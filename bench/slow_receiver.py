"""A deliberately slow webhook receiver: answers 200 after two seconds.

python -m bench.slow_receiver PORT
"""

from __future__ import annotations

import sys

import trio


async def handle(stream: trio.SocketStream) -> None:
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        await trio.sleep(2)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


async def main(port: int) -> None:
    await trio.serve_tcp(handle, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
