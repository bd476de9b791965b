"""A tiny TCP proxy that breaks connections on purpose.

The bridge talks to the simulator through it. `reset_probability` is the chance that
a chunk of a request or of an answer, instead of being forwarded, makes the proxy
reset the client's connection (TCP RST: "connection reset by peer", either before the
server saw the request or after it answered). `close` stops listening and resets
every open connection (the client sees "connection refused" until `reopen` listens
again on the same port), as when the API's load balancer restarts.
"""

import asyncio
import contextlib
import random
import socket
import struct

CHUNK_BYTES = 65536


class ResetProxy:
    """Forwards 127.0.0.1:`port` to the target; resets connections on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._rng = random.Random()
        self.port = 0
        self.reset_probability = 0.0
        self.resets = 0
        self.refused_periods = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            _reset(writer)
        self.refused_periods += 1

    async def reopen(self) -> None:
        await self.start()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            _reset(writer)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                *self._target
            )
        except OSError:
            _reset(client_writer)
            return

        self._writers.update((client_writer, upstream_writer))
        upward = asyncio.create_task(
            self._pump(client_reader, upstream_writer, client_writer)
        )
        downward = asyncio.create_task(
            self._pump(upstream_reader, client_writer, client_writer)
        )
        try:
            await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upward, downward):
                task.cancel()
            await asyncio.gather(upward, downward, return_exceptions=True)
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        """Copy bytes one way; a chunk may instead reset the client's connection."""
        with contextlib.suppress(OSError):
            while chunk := await source.read(CHUNK_BYTES):
                if self._rolls_reset():
                    self.resets += 1
                    _reset(client)
                    return
                sink.write(chunk)
                await sink.drain()

    def _rolls_reset(self) -> bool:
        chance = self.reset_probability
        return chance > 0 and self._rng.random() < chance


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP RST instead of a FIN."""
    transport_socket = writer.get_extra_info("socket")
    if transport_socket is not None:
        with contextlib.suppress(OSError):
            transport_socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()
