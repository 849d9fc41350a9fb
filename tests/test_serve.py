"""mal serve: the batched engine, the WebSocket protocol, limits and faults, on loopback.

Every test runs a small model in-process on an ephemeral port; where a test hurts one stream,
a well-behaved stream runs beside it and must come out equal to the same stream alone.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time

import aiohttp
import numpy as np
import pytest
import torch
from aiohttp import web

from mal.inference import live_stream
from mal.models import build_model
from mal.serve.engine import Engine
from mal.serve.server import Limits, Server

TINY = {"conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model({"preset": "deepfilternet_16k", **TINY}).eval()


@pytest.fixture(scope="module")
def model48():
    torch.manual_seed(1)
    return build_model({"preset": "deepfilternet3_arch", **TINY}).eval()


def _signal(rate: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(len(t))
    return np.round(np.clip(x, -1, 1) * 32767).astype("<i2")


def _alone(model, pcm: np.ndarray, rate: int) -> np.ndarray:
    """What the stream gives alone (the reference for every served stream), int16."""
    stream = live_stream(model, rate)
    step = rate // 100
    out = b"".join(stream.process(pcm[i : i + step].tobytes()) for i in range(0, len(pcm), step))
    return np.frombuffer(out + stream.flush(pcm=True), dtype="<i2")


def _close_enough(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal to within 1e-4 in float (about 3 int16 steps; batching only reorders float sums)."""
    return len(a) == len(b) and np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= 4


# -- the engine ---------------------------------------------------------------------------------

def test_a_stream_in_a_batch_equals_the_stream_alone(model):
    rng = np.random.default_rng(0)
    many = Engine(model, max_streams=8)
    alone = [Engine(model, max_streams=1) for _ in range(2)]
    slots = [many.open(16000) for _ in range(5)]
    solos = [engine.open(16000) for engine in alone]
    state0 = {k: v.copy() for k, v in many.state.items()}
    for step in range(6):  # streams join and leave between batches: slot 4 leaves after step 2
        ks = np.array([1 + (step + 2 * i) % 3 for i in range(len(slots))])  # ragged: 1-3 hops each
        hops = rng.standard_normal((len(slots), ks.max() * many.hop)).astype(np.float32) * 0.1
        out, _ = many.run(slots, hops, ks)
        for i, (engine, solo) in enumerate(zip(alone, solos)):  # slots 0 and 1 against themselves alone
            ref, _ = engine.run([solo], hops[i : i + 1, : ks[i] * many.hop])
            assert np.abs(out[i, : ks[i] * many.hop] - ref[0]).max() < 1e-4
        if step == 2:
            many.close(slots.pop())
    # a slot's row is reset when it is reused: a new stream starts from the initial state
    again = many.open(16000)
    for key, value in state0.items():
        row = many._rows(key, slice(again.index, again.index + 1))
        assert np.array_equal(value[row], many.state[key][row])


def test_engine_step_streams_equal_live_streams_alone(model):
    engine = Engine(model, max_streams=4)
    signals = {rate: _signal(rate, 0.4, i) for i, rate in enumerate((16000, 8000, 44100))}
    slots = {rate: engine.open(rate) for rate in signals}
    out = {rate: [] for rate in signals}
    for i in range(0, 48000, 441):  # uneven chunks, all streams fed in turn, one step after each round
        for rate, pcm in signals.items():
            a, b = i * rate // 48000, (i + 441) * rate // 48000
            if a < len(pcm):
                out[rate].append(engine.feed(slots[rate], pcm[a:b].tobytes()))
        for slot, data, _ in engine.step():
            out[slot.live.rate].append(data)
        for rate, pcm in signals.items():  # after each turn as many samples out as in, hop or no hop
            assert sum(map(len, out[rate])) == 2 * min((i + 441) * rate // 48000, len(pcm)), rate
    for rate in signals:
        engine.end(slots[rate])
    while any(not s.done for s in slots.values()):
        for slot, data, _ in engine.step():
            out[slot.live.rate].append(data)
    for rate, pcm in signals.items():
        got = np.frombuffer(b"".join(out[rate]), dtype="<i2")
        assert _close_enough(got, _alone(model, pcm, rate)), rate


# -- the server ---------------------------------------------------------------------------------

def _serve(models, coro, limits=None, token=None):
    """Run ``coro(base_url, server)`` against a server on an ephemeral loopback port."""

    async def main():
        server = Server(models, limits or Limits(max_streams=4), token)
        runner = web.AppRunner(server.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:
                return await asyncio.wait_for(coro(f"http://127.0.0.1:{port}", server, session), 60)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


async def _client(session, base, pcm: np.ndarray, rate: int, chunk_ms: float = 10, pace: float = 0.0, query: str = ""):
    """One well-behaved stream: (ready message, output int16, close code)."""
    async with session.ws_connect(f"{base}/v1/stream?rate={rate}{query}") as ws:
        ready = json.loads((await ws.receive()).data)
        assert ready["type"] == "ready", ready
        step = max(1, int(rate * chunk_ms / 1000))
        out, done = [], asyncio.Event()

        async def reader():
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    out.append(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    m = json.loads(msg.data)
                    assert m["type"] == "done", m
                    done.set()

        task = asyncio.create_task(reader())
        for i in range(0, len(pcm), step):
            await ws.send_bytes(pcm[i : i + step].tobytes())
            await asyncio.sleep(pace)
        await ws.send_str(json.dumps({"type": "end"}))
        await asyncio.wait_for(done.wait(), 30)
        await task
        return ready, np.frombuffer(b"".join(out), dtype="<i2"), ws.close_code


def test_protocol_health_metrics_and_a_stream(model, model48):
    pcm = _signal(16000, 0.5, 0)

    async def check(base, server, session):
        async with session.get(f"{base}/healthz") as r:
            assert r.status == 200 and await r.json() == {"status": "ok", "streams": 0, "max_streams": 4,
                                                          "models": ["small", "wide"]}
        ready, out, code = await _client(session, base, pcm, 16000)
        assert ready["rate"] == 16000 and ready["model"] == "small" and ready["latency_samples"] > 0
        assert len(out) == len(pcm) + ready["latency_samples"] and code == 1000
        assert _close_enough(out, _alone(model, pcm, 16000))
        ready, out, code = await _client(session, base, pcm, 16000, chunk_ms=3.3, query="&model=wide")
        assert ready["model"] == "wide" and ready["model_rate"] == 48000
        assert _close_enough(out, _alone(model48, pcm, 16000))
        async with session.get(f"{base}/metrics") as r:
            text = await r.text()
        assert "mal_active_streams 0.0" in text and "mal_batch_seconds_count" in text
        hops = float(next(line.split()[1] for line in text.splitlines() if line.startswith("mal_hops_total")))
        assert hops > 0
        async with session.get(f"{base}/") as r:
            page = await r.text()
        assert "AudioWorklet" in page or "audioWorklet" in page
        assert "http://" not in page and "https://" not in page  # no external scripts, fonts or CDNs

    _serve({"small": model, "wide": model48}, check)


def test_concurrent_streams_joining_and_leaving_do_not_change_each_other(model):
    signals = [(_signal(rate, 0.8, i), rate) for i, rate in enumerate((16000, 48000, 22050, 16000))]

    async def check(base, server, session):
        async def late(i, delay):
            await asyncio.sleep(delay)
            return await _client(session, base, *signals[i], pace=0.002)

        results = await asyncio.gather(*(late(i, 0.05 * i) for i in range(len(signals))))
        for (pcm, rate), (_, out, code) in zip(signals, results):
            assert code == 1000 and _close_enough(out, _alone(model, pcm, rate)), rate

    _serve({"m": model}, check)


async def _expect_error(session, url, code: int, fragment: str, send=None):
    async with session.ws_connect(url) as ws:
        msg = await ws.receive()
        if send is not None:
            assert json.loads(msg.data)["type"] == "ready"
            await send(ws)
            msg = await ws.receive()
            while msg.type == aiohttp.WSMsgType.BINARY:
                msg = await ws.receive()
        m = json.loads(msg.data)
        assert m["type"] == "error" and fragment in m["message"], m
        msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == code, (ws.close_code, m)


def test_bad_requests_end_only_their_own_stream(model):
    good = _signal(16000, 1.5, 3)

    async def check(base, server, session):
        bystander = asyncio.create_task(_client(session, base, good, 16000, pace=0.003))
        url = f"{base}/v1/stream"
        await _expect_error(session, f"{url}?rate=12345", 1008, "bad rate")
        await _expect_error(session, f"{url}", 1008, "no rate")
        await _expect_error(session, f"{url}?rate=16000&model=nope", 1008, "unknown model")
        await _expect_error(session, f"{url}?rate=16000", 1007, "even number of bytes",
                            send=lambda ws: ws.send_bytes(b"\x01\x02\x03"))
        await _expect_error(session, f"{url}?rate=16000", 1002, "unknown text message",
                            send=lambda ws: ws.send_str("hello"))
        await _expect_error(session, f"{url}?rate=8000", 1009, "at most",
                            send=lambda ws: ws.send_bytes(bytes(2 * 8000 + 2)))
        _, out, code = await bystander
        assert code == 1000 and _close_enough(out, _alone(model, good, 16000))
        async with session.get(f"{base}/metrics") as r:
            text = await r.text()
        refused = float(next(line.split()[1] for line in text.splitlines() if line.startswith("mal_refused_streams_total")))
        assert refused == 3

    _serve({"m": model}, check)


def test_token_and_stream_limit(model):
    async def check(base, server, session):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await session.ws_connect(f"{base}/v1/stream?rate=16000")
        assert err.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(f"{base}/v1/stream?rate=16000&token=wrong")
        first = await session.ws_connect(f"{base}/v1/stream?rate=16000&token=s3cret")
        second = await session.ws_connect(f"{base}/v1/stream?rate=16000", headers={"Authorization": "Bearer s3cret"})
        for ws in (first, second):
            assert json.loads((await ws.receive()).data)["type"] == "ready"
        await _expect_error(session, f"{base}/v1/stream?rate=16000&token=s3cret", 1013, "server full: 2 streams")
        async with session.get(f"{base}/healthz") as r:
            assert (await r.json())["streams"] == 2
        await first.close()
        await second.close()

    _serve({"m": model}, check, limits=Limits(max_streams=2), token="s3cret")


def test_a_vanishing_client_frees_its_slot_at_once(model):
    async def check(base, server, session):
        ws = await session.ws_connect(f"{base}/v1/stream?rate=16000")
        await ws.receive()
        await ws.send_bytes(_signal(16000, 0.2, 0).tobytes())
        ws._response.connection.transport.abort()  # no close frame: the client just goes
        for _ in range(100):
            async with session.get(f"{base}/healthz") as r:
                if (await r.json())["streams"] == 0:
                    break
            await asyncio.sleep(0.02)
        assert (await r.json())["streams"] == 0 and not server.engines["m"].slots
        _, out, code = await _client(session, base, _signal(16000, 0.3, 1), 16000)  # the slot serves again
        assert code == 1000

    _serve({"m": model}, check, limits=Limits(max_streams=1))


def test_input_faster_than_real_time_is_throttled_not_dropped(model):
    pcm = _signal(16000, 6.0, 2)
    limits = Limits(max_streams=2, max_backlog_seconds=0.2)

    async def check(base, server, session):
        most = 0

        async def watch():
            nonlocal most
            while True:
                most = max([most, *(s.pending_hops for s in server.engines["m"].slots.values())])
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        _, out, code = await _client(session, base, pcm, 16000, chunk_ms=100)  # as fast as the socket takes it
        watcher.cancel()
        assert code == 1000 and _close_enough(out, _alone(model, pcm, 16000))  # nothing dropped
        backlog = int(0.2 * 16000) // 160
        assert 0 < most <= backlog + 10 + 1  # the backlog bound plus one message (100 ms = 10 hops)

    _serve({"m": model}, check, limits=limits)


def test_a_client_that_stops_reading_is_closed_with_a_reason(model48):
    """Output waits in a bounded queue; a client reading nothing is closed, the others go on."""
    pytest.importorskip("websocket", reason="websocket-client drives the non-reading client")
    import websocket

    limits = Limits(max_streams=3, max_output_seconds=0.5)
    good = _signal(48000, 1.0, 4)

    async def check(base, server, session):
        url = base.replace("http", "ws") + "/v1/stream?rate=48000"

        def stubborn():  # a blocking client with tiny socket buffers that sends and never reads
            small = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096), (socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)]
            ws = websocket.create_connection(url, sockopt=small, timeout=20)
            chunk = bytes(2 * 4800)
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:  # 100 ms of audio at a time, until the server drops it
                    ws.send_binary(chunk)
                    time.sleep(0.002)
            except (OSError, websocket.WebSocketException):
                return "closed"
            return "still open"

        worker = asyncio.get_running_loop().run_in_executor(None, stubborn)
        _, out, code = await _client(session, base, good, 48000, pace=0.002)
        assert code == 1000 and _close_enough(out, _alone(model48, good, 48000))
        assert await worker == "closed"
        async with session.get(f"{base}/metrics") as r:
            text = await r.text()
        assert float(next(line.split()[1] for line in text.splitlines() if line.startswith("mal_dropped_streams_total"))) == 1
        assert not server.engines["m"].slots or len(server.engines["m"].slots) == 0

    _serve({"m": model48}, check, limits=limits)


def test_ctrl_c_shuts_down_cleanly(model, tmp_path):
    from mal.models.store import save_model

    path = tmp_path / "tiny.pt"
    save_model(model, path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mal", "serve", "--model", f"tiny={path}", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async def go():
            async with aiohttp.ClientSession() as session:
                for _ in range(200):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.05)
                ws = await session.ws_connect(f"http://127.0.0.1:{port}/v1/stream?rate=16000")
                assert json.loads((await ws.receive()).data)["type"] == "ready"
                await ws.send_bytes(_signal(16000, 0.1, 0).tobytes())
                proc.send_signal(2)  # SIGINT, as Ctrl-C
                msgs = []
                async for msg in ws:
                    msgs.append(msg)
                return ws.close_code, msgs

        code, msgs = asyncio.run(asyncio.wait_for(go(), 30))
        assert code == 1001
        assert any(m.type == aiohttp.WSMsgType.TEXT and "shutting down" in m.data for m in msgs)
        assert proc.wait(timeout=15) == 0
        assert "Traceback" not in proc.stdout.read()
    finally:
        proc.kill()
