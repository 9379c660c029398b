"""A TCP peer that answers fixed request bytes with fixed reply bytes (frames written out by hand).

The over-TCP simulator tests use our codecs on both sides, so a codec bug that is symmetric
(a wrong DI order, a wrong offset) would pass them. This peer knows no protocol: it compares
what arrives with the bytes a test wrote out from the standard and sends back the bytes the test
wrote out, so the real link and profile are checked against the wire itself.

``ScriptedPeer({request: reply})``: ``reply`` is bytes, ``"close"`` (hang up instead of
answering), ``None`` (stay silent), or a list of those used one after another (the last one
repeats). Bytes that are no known request (and cannot become one) are recorded and not
answered. ``received`` is everything that arrived, ``requests`` the requests one by one.
"""
from __future__ import annotations

import asyncio
import threading

Reply = bytes | str | None


def frame(text: str) -> bytes:
    """``"68 34 12 ..."`` to bytes."""
    return bytes.fromhex(text)


class _Conn(asyncio.Protocol):
    def __init__(self, peer: ScriptedPeer):
        self.peer = peer
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer.connections += 1

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        with peer.lock:
            peer.received += data
        self.buf += data
        while self.buf:
            key = next((k for k in peer.script if self.buf.startswith(k)), None)
            if key is None:
                if any(k.startswith(self.buf) for k in peer.script):
                    return  # the start of a known request: wait for the rest
                with peer.lock:
                    peer.requests.append(self.buf)
                self.buf = b""
                return
            self.buf = self.buf[len(key):]
            with peer.lock:
                peer.requests.append(key)
            reply = peer.next_reply(key)
            if reply == "close":
                self.transport.close()
                return
            if reply is not None:
                self.transport.write(reply)


class ScriptedPeer:
    def __init__(self, script: dict[bytes, Reply | list[Reply]]):
        self.script = dict(script)
        self.received = b""
        self.requests: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        self._used: dict[bytes, int] = {}
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-peer", daemon=True)
        self.port = 0

    def next_reply(self, key: bytes) -> Reply:
        reply = self.script[key]
        if not isinstance(reply, list):
            return reply
        n = self._used.get(key, 0)
        self._used[key] = n + 1
        return reply[min(n, len(reply) - 1)]

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> ScriptedPeer:
        self._thread.start()

        async def serve():
            self._server = await self._loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
            return self._server.sockets[0].getsockname()[1]
        self.port = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close():
            if self._server is not None:
                self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
