"""``mal serve``: live enhancement of many streams over WebSocket, batched.

Built on aiohttp (one well-kept asyncio package for HTTP, WebSocket and static files, with
flow control on both directions of a WebSocket) and prometheus-client for ``/metrics``.

Protocol (docs/serve.md):
- ``GET /healthz`` -> ``{"status": "ok", "streams": k, "max_streams": n}``; ``GET /metrics``:
  Prometheus text; ``GET /``: the microphone page.
- WebSocket ``/v1/stream?rate=R[&model=NAME][&token=T]`` (or ``Authorization: Bearer T``): the
  server sends text ``{"type": "ready", "rate": R, "latency_samples": L, ...}``; the client sends
  binary little-endian int16 mono PCM at R (any even length) and gets binary int16 PCM at R,
  the enhanced stream delayed by L samples; text ``{"type": "end"}`` -> the rest (as many samples
  as were sent, plus L), text ``{"type": "done"}``, a normal close. An error is a text
  ``{"type": "error", "message": ...}`` and a close with a code and reason; it ends that stream only.

One connection is one stream. Every model has an :class:`~mal.serve.engine.Engine`; a single
compute thread runs, again and again, every stream's due hops as one batch per model (the hops
that arrived while the last batch ran go together in the next, so a loaded server runs more
streams per call, not more calls). Input is read only while a stream has less than
``max_backlog_seconds`` waiting (the socket's flow control then holds the client back: never
dropped); output waits in a queue of at most ``max_output_seconds``, beyond which the client is
taken as not reading and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import prometheus_client as prom
from aiohttp import WSMsgType, web

try:  # a dependency everywhere but Windows, which uvloop does not support
    import uvloop
except ImportError:
    uvloop = None

from mal.inference.stream import RATES
from mal.serve.engine import Engine, Slot

# Close codes (RFC 6455 / IANA): normal, going away, protocol error, bad data, policy, too big, try later.
NORMAL, GOING_AWAY, PROTOCOL, BAD_DATA, POLICY, TOO_BIG, TRY_LATER = 1000, 1001, 1002, 1007, 1008, 1009, 1013
WRITER_LIMIT = 32768  # bytes aiohttp buffers per connection before a send waits for the socket
SEND_BUFFER = 65536  # the socket's kernel send buffer (Linux doubles it)


@dataclass
class Limits:
    max_streams: int = 64
    max_message_seconds: float = 1.0  # the longest binary message, in seconds of audio at the stream's rate
    max_backlog_seconds: float = 0.5  # input waiting for the network before the server stops reading
    max_output_seconds: float = 2.0  # output waiting for the client before it is closed as not reading
    max_hops_per_batch: int = 8


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    slot: Slot
    engine: Engine
    rate: int
    transport: asyncio.Transport | None
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    out_bytes: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    error: tuple[int, str] | None = None
    receiver: asyncio.Task | None = None  # the task reading the client's messages


class Server:
    """The aiohttp application around one engine per model."""

    def __init__(self, models: dict, limits: Limits | None = None, token: str | None = None, threads: int = 1):
        if not models:
            raise ValueError("mal serve needs at least one model")
        self.limits = limits or Limits()
        self.token = token or None
        self.threads = threads
        self.engines = {name: Engine(m, self.limits.max_streams, self.limits.max_hops_per_batch, threads)
                        for name, m in models.items()}
        self.default = next(iter(self.engines))
        self.conns: dict[int, _Conn] = {}
        self.registry = prom.CollectorRegistry()
        self.m_streams = prom.Gauge("mal_active_streams", "streams open now", registry=self.registry)
        self.m_hops = prom.Counter("mal_hops", "stream hops through the network", registry=self.registry)
        self.m_tick = prom.Histogram("mal_batch_seconds", "network time per batch", registry=self.registry,
                                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32))
        self.m_refused = prom.Counter("mal_refused_streams", "connections refused (token, full, bad request)",
                                      registry=self.registry)
        self.m_dropped = prom.Counter("mal_dropped_streams", "streams closed by the server (errors, not reading)",
                                      registry=self.registry)
        self._work = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mal-serve-compute")
        self.app = web.Application()
        self.app.add_routes([web.get("/", self.page), web.get("/worklet.js", self.worklet),
                             web.get("/healthz", self.healthz), web.get("/metrics", self.metrics),
                             web.get("/v1/stream", self.stream)])
        self.app.on_startup.append(self._start)
        self.app.on_shutdown.append(self._shutdown)

    # -- HTTP ------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=_asset("index.html"), content_type="text/html")

    async def worklet(self, request: web.Request) -> web.Response:
        return web.Response(text=_asset("worklet.js"), content_type="application/javascript")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "streams": len(self.conns), "max_streams": self.limits.max_streams,
                                  "models": list(self.engines)})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=prom.generate_latest(self.registry), headers={"Content-Type": prom.CONTENT_TYPE_LATEST})

    # -- one stream ------------------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        if self.token and not self._authorised(request):
            self.m_refused.inc()
            raise web.HTTPUnauthorized(text="missing or wrong token (?token=... or Authorization: Bearer ...)\n")
        # aiohttp's own bound on a message (beyond it: close 1009); the per-rate bound is checked below
        ws = web.WebSocketResponse(max_msg_size=int(4 * self.limits.max_message_seconds * max(RATES)) + 1024,
                                   timeout=2.0, heartbeat=None, writer_limit=WRITER_LIMIT)
        transport = request.transport  # kept: a client that does not read loses its connection
        await ws.prepare(request)
        sock = transport.get_extra_info("socket") if transport else None
        if sock is not None:  # a small kernel send buffer: a client that stops reading shows at once
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        try:
            engine, rate = self._choose(request.query)
            slot = engine.open(rate)
        except (ValueError, RuntimeError) as err:
            self.m_refused.inc()
            await _fail(ws, TRY_LATER if isinstance(err, RuntimeError) else POLICY, str(err))
            return ws
        conn = _Conn(ws, slot, engine, rate, transport)
        slot.owner = conn
        conn.drained.set()
        self.conns[id(conn)] = conn
        self.m_streams.set(len(self.conns))
        sender = asyncio.create_task(self._send(conn))
        try:
            await ws.send_str(json.dumps({"type": "ready", "rate": rate, "latency_samples": slot.live.latency_samples,
                                          "latency_ms": round(1000 * slot.live.latency_samples / rate, 3),
                                          "model": self._name(engine), "model_rate": engine.sample_rate,
                                          "hop_ms": 1000 * engine.hop / engine.sample_rate}))
            conn.receiver = asyncio.create_task(self._receive(conn))
            with contextlib.suppress(asyncio.CancelledError):
                await conn.receiver
        finally:
            engine.close(slot)
            self.conns.pop(id(conn), None)
            self.m_streams.set(len(self.conns))
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if conn.error is not None:
                self.m_dropped.inc()
                await _fail(ws, *conn.error, transport=transport)
            elif not ws.closed:
                await ws.close(code=NORMAL)
        return ws

    async def _receive(self, conn: _Conn) -> None:
        max_bytes = int(2 * self.limits.max_message_seconds * conn.rate)
        backlog_hops = max(1, int(self.limits.max_backlog_seconds * conn.engine.sample_rate) // conn.engine.hop)
        while conn.error is None:
            msg = await conn.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return  # the client went away: the slot is freed by the caller, now
            if msg.type == WSMsgType.BINARY:
                if len(msg.data) > max_bytes:
                    conn.error = (TOO_BIG, f"message of {len(msg.data)} bytes: at most {max_bytes} "
                                           f"({self.limits.max_message_seconds:g} s of audio) a message")
                    return
                if len(msg.data) % 2:
                    conn.error = (BAD_DATA, f"binary messages are int16 PCM: an even number of bytes, got {len(msg.data)}")
                    return
                self._emit(conn, conn.engine.feed(conn.slot, msg.data))
                self._work.set()
                # Backpressure: with this much waiting, read nothing more until the network caught up.
                while conn.slot.pending_hops > backlog_hops and conn.error is None and not conn.ws.closed:
                    conn.drained.clear()
                    await conn.drained.wait()
            elif msg.type == WSMsgType.TEXT:
                try:
                    kind = json.loads(msg.data).get("type")
                except (ValueError, AttributeError):
                    kind = None
                if kind != "end":
                    conn.error = (PROTOCOL, f"unknown text message {msg.data[:60]!r}: the only one is {{\"type\": \"end\"}}")
                    return
                conn.engine.end(conn.slot)
                self._work.set()
                await conn.finished.wait()
                if conn.error is None:
                    await conn.out.join()  # everything sent
                    await conn.ws.send_str(json.dumps({"type": "done"}))
                return

    async def _send(self, conn: _Conn) -> None:
        while True:
            data = await conn.out.get()
            try:
                await conn.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                conn.error = conn.error or (GOING_AWAY, "connection lost")
            finally:
                conn.out_bytes -= len(data)
                conn.out.task_done()

    # -- the compute loop --------------------------------------------------------------------
    async def _start(self, app) -> None:
        self._loop_task = asyncio.create_task(self._compute())

    async def _shutdown(self, app) -> None:
        for conn in list(self.conns.values()):
            conn.error = (GOING_AWAY, "server shutting down")
            conn.drained.set()
            conn.finished.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_fail(conn.ws, GOING_AWAY, "server shutting down"), 1.0)
        self._loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop_task
        self._pool.shutdown(wait=True)

    async def _compute(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            self._work.clear()
            for engine in self.engines.values():
                for slots, ks in engine.batches():
                    slots, ks, hops = engine.prepare(slots, ks)
                    if not slots:
                        continue
                    out, seconds = await loop.run_in_executor(self._pool, engine.run, slots, hops, ks)
                    self.m_tick.observe(seconds)
                    self.m_hops.inc(int(ks.sum()))
                    for slot, data, last in engine.collect(slots, ks, out):
                        conn = slot.owner
                        self._emit(conn, data)
                        if last:
                            conn.finished.set()
                        conn.drained.set()
                    self._work.set()  # more may have come in meanwhile

    # -- helpers -----------------------------------------------------------------------------
    def _emit(self, conn: _Conn, data: bytes) -> None:
        """Queue a stream's output for its client; a client that lets too much wait is dropped."""
        if not data:
            return
        conn.out_bytes += len(data)
        conn.out.put_nowait(data)
        if conn.out_bytes > 2 * int(self.limits.max_output_seconds * conn.rate) and conn.error is None:
            conn.error = (POLICY, f"output not read: over {self.limits.max_output_seconds:g} s "
                                  f"of audio waiting for the client")
            conn.finished.set()
            # Nothing more can reach this client (its socket is full, and a send waiting on it
            # cannot be cancelled): drop the connection now.
            if conn.transport is not None:
                conn.transport.abort()
            if conn.receiver is not None:
                conn.receiver.cancel()

    def _authorised(self, request: web.Request) -> bool:
        given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _choose(self, query) -> tuple[Engine, int]:
        name = query.get("model", self.default)
        if name not in self.engines:
            raise ValueError(f"unknown model {name!r}: this server holds {', '.join(self.engines)}")
        raw = query.get("rate")
        if raw is None:
            raise ValueError(f"no rate: connect to /v1/stream?rate=R with R one of {', '.join(map(str, RATES))}")
        try:
            rate = int(raw)
        except ValueError:
            rate = 0
        if rate not in RATES:
            raise ValueError(f"bad rate {raw!r}: one of {', '.join(map(str, RATES))}")
        return self.engines[name], rate

    def _name(self, engine: Engine) -> str:
        return next(n for n, e in self.engines.items() if e is engine)


async def _fail(ws: web.WebSocketResponse, code: int, message: str, transport=None) -> None:
    """The protocol's error: a text message, then a close with ``code`` and a short reason; a
    client that takes neither within a second or two (not reading) loses its connection. After a
    close handshake the client has read everything, so the connection is then dropped either way."""
    if not ws.closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.send_str(json.dumps({"type": "error", "message": message})), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=code, message=message[:120].encode()), 2.0)
    if transport is not None:
        transport.abort()


def _asset(name: str) -> str:
    return resources.files("mal.serve").joinpath("page", name).read_text(encoding="utf-8")


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where installed (libuv: less CPU per WebSocket message than asyncio's
    own loop: benchmarks/bench_serve.py, docs/serve.md), else asyncio's."""
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def serve(models: dict, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          token: str | None = None, threads: int = 1, print_fn=print) -> None:
    """Run the server until Ctrl-C (which closes every stream with 1001 and exits cleanly)."""
    server = Server(models, limits, token, threads)
    print_fn(f"mal serve: http://{host}:{port}/ (page), ws://{host}:{port}/v1/stream?rate=16000; "
             f"models {', '.join(server.engines)}; at most {server.limits.max_streams} streams; Ctrl-C stops")
    web.run_app(server.app, host=host, port=port, print=None, handle_signals=True, shutdown_timeout=3.0, loop=new_loop())


class Background:
    """A :class:`Server` on its own event loop in a daemon thread (tests, screenshots, notebooks):
    ``with Background(server) as url: ...``."""

    def __init__(self, server: Server, host: str = "127.0.0.1", port: int = 0):
        self.server, self.host, self.port = server, host, port
        self._started = threading.Event()

    def __enter__(self) -> str:
        self._thread = threading.Thread(target=self._run, name="mal-serve", daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("mal serve did not start within 30 s")
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self.loop = new_loop()
        self.runner = web.AppRunner(self.server.app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, self.host, self.port)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
