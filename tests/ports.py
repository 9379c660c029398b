"""Ports for the servers a test starts (simulated gateways, benches)."""
from __future__ import annotations

import random
import socket

# Below Linux's ephemeral range (32768-60999 by default), where the kernel picks the local ports of
# outgoing connections: a block drawn there can be taken between the check and the bind.
LOW, HIGH = 20000, 32000


def free_port_block(n: int) -> int:
    """A base port with ``n`` consecutive ports after it free on 127.0.0.1 now."""
    for _ in range(100):
        base = random.randint(LOW, HIGH - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")
