"""A real TCP server speaking RESP in front of a real Redis: it passes every command through and hands
the reply back, except that the replies of the commands a test names are rewritten on the way (a server
whose clock is off, that says it is an older Redis, that refuses scripts). Clients see a server, not a
mock: their own connection, handshake, pipelines and errors."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from typing import BinaryIO

# The reply a test puts in place of the server's: (the command's arguments, the server's raw reply) ->
# the raw reply the client gets.
Rewrite = Callable[[list[bytes], bytes], bytes]

_LINE_ONLY = b"+-:_,#("  # simple string, error, integer, and RESP3's null, double, boolean, big number
_SIZED = b"$=!"  # bulk string, verbatim string, bulk error
_AGGREGATE = b"*~>"  # array, set, push
_PAIRS = b"%|"  # map, attribute


def bulk(text: str | bytes) -> bytes:
    """A RESP bulk string."""
    data = text.encode() if isinstance(text, str) else text
    return b"$%d\r\n%s\r\n" % (len(data), data)


def array(*items: str | bytes) -> bytes:
    """A RESP array of bulk strings."""
    return b"*%d\r\n" % len(items) + b"".join(bulk(i) for i in items)


def error(message: str) -> bytes:
    """A RESP error reply."""
    return b"-" + message.encode() + b"\r\n"


def bulk_text(reply: bytes) -> bytes:
    """The content of a bulk string reply."""
    _size, _, rest = reply.partition(b"\r\n")
    return rest[:-2]


def _line(stream: BinaryIO) -> bytes:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise EOFError
    return line


def read_reply(stream: BinaryIO) -> bytes:
    """One whole reply, raw, as the server sent it."""
    line = _line(stream)
    kind, size = line[:1], line[1:-2]
    if kind in _LINE_ONLY:
        return line
    if kind in _SIZED:
        return line if int(size) < 0 else line + stream.read(int(size) + 2)
    if kind in _AGGREGATE or kind in _PAIRS:
        count = int(size) * (2 if kind in _PAIRS else 1)
        return line + b"".join(read_reply(stream) for _ in range(max(count, 0)))
    raise ValueError(f"not RESP: {line!r}")


def read_command(stream: BinaryIO) -> tuple[list[bytes], bytes]:
    """One command (an array of bulk strings, as every client sends): its arguments and its raw bytes."""
    raw = _line(stream)
    if raw[:1] != b"*":
        raise ValueError(f"not a RESP command: {raw!r}")
    args = []
    for _ in range(int(raw[1:-2])):
        size = _line(stream)
        data = stream.read(int(size[1:-2]) + 2)
        raw += size + data
        args.append(data[:-2])
    return args, raw


class RespProxy:
    """Listens on a free loopback port (`url`) and relays to the Redis at `upstream` (host, port);
    `rewrites` maps an upper-case command name to how its reply is changed."""

    def __init__(self, upstream: tuple[str, int], rewrites: dict[str, Rewrite], db: int = 0) -> None:
        proxy = self

        class Relay(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._relay(self.rfile, self.wfile)

        self.upstream = upstream
        self.rewrites = rewrites
        self.seen: list[str] = []  # the commands the clients sent, by name
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Relay, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self.url = f"redis://127.0.0.1:{self._server.server_address[1]}/{db}"

    def _relay(self, client_in: BinaryIO, client_out: BinaryIO) -> None:
        with socket.create_connection(self.upstream, timeout=10) as up:
            server_in, server_out = up.makefile("rb"), up.makefile("wb")
            while True:
                try:
                    args, raw = read_command(client_in)
                except EOFError:
                    return
                name = args[0].decode().upper() if args else ""
                self.seen.append(name)
                server_out.write(raw)
                server_out.flush()
                reply = read_reply(server_in)
                rewrite = self.rewrites.get(name)
                client_out.write(rewrite(args, reply) if rewrite else reply)
                client_out.flush()

    def __enter__(self) -> RespProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
