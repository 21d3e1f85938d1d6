"""Hot-path ids come from blocks of the kernel's generator (perkamo/ids.py)."""

from __future__ import annotations

import os
import re

from perkamo import ids


def test_ids_have_the_documented_shape_and_never_repeat():
    hexes = [ids.token_hex(12) for _ in range(20_000)]  # several blocks
    assert all(re.fullmatch(r"[0-9a-f]{24}", h) for h in hexes)
    assert len(set(hexes)) == len(hexes)
    safe = [ids.token_urlsafe(12) for _ in range(1000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", s) for s in safe)
    assert len(set(safe)) == len(safe)
    assert len(ids.token_hex(5000)) == 10_000  # larger than a block


def test_a_forked_child_never_repeats_its_parents_next_ids():
    ids.token_hex(1)  # a block is loaded and partly used
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.write(write, ids.token_hex(16).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    assert len(from_child) == 32
    assert from_child != ids.token_hex(16)
