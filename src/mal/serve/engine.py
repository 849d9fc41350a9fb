"""Many live streams of one model through the network as one batch.

Each stream keeps its own resamplers and hop buffer (a :class:`~mal.inference.stream.LiveStream`
split into ``push`` and ``pull``); the network's state of every stream lives in one batched
state, a row per slot. :meth:`Engine.run` takes the due hops of any set of slots, gathers their
rows, runs the network's streaming step once per hop (the j-th call for the slots that have a
j-th hop) and scatters the new rows back: per hop a fixed number of array operations, none per
stream. The step is the ONNX
graph of ``mal export`` (:meth:`DeepFilterNet.frames` on one hop, batch axis dynamic), made in
memory at start-up and run by onnxruntime: 0.26 ms per stream-hop for 64 DeepFilterNet3 streams
(one thread, ad-hoc, with another job on the machine) against 0.48 ms for ``frames`` in PyTorch
(issue 27's quiet-machine figure), and it frees
the GIL while it runs. The rows never mix (every operation of the step is per batch row), so a
stream's output does not depend on which others share its batch (tests/test_serve.py: equal to
the stream alone, in PyTorch, within 1e-4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mal.inference.export import step_session
from mal.inference.stream import LiveStream
from mal.models import DeepFilterNet


class _Spec:
    """What a :class:`LiveStream` needs of its network when the engine runs it."""

    def __init__(self, hop: int, sample_rate: int, delay_samples: int):
        self.hop, self.sample_rate, self.delay_samples = hop, sample_rate, delay_samples

    def reset(self) -> None:  # the engine resets the slot's state row
        pass


@dataclass
class Slot:
    """One stream in the engine: its row, its live stream and the hops waiting for the network."""

    index: int
    live: LiveStream
    pending: list[np.ndarray] = field(default_factory=list)  # model-rate blocks of whole hops
    pending_hops: int = 0
    queued: int = 0  # hops ever queued / ever run: the stream is done when every queued hop after end() ran
    ran: int = 0
    final: int | None = None  # after end(): the hop count at which the stream is done
    done: bool = False
    owner: object = None  # the server's connection

    def take(self, k: int, hop: int) -> np.ndarray:
        """The next ``k`` hops of input."""
        data = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        block, rest = data[: k * hop], data[k * hop :]
        self.pending = [rest] if len(rest) else []
        self.pending_hops -= k
        return block


class Engine:
    """Batched streams of one :class:`DeepFilterNet` (eval mode) with room for ``max_streams``."""

    def __init__(self, model: DeepFilterNet, max_streams: int, max_hops_per_batch: int = 8, threads: int = 1):
        if not isinstance(model, DeepFilterNet):
            raise ValueError(f"live streams need a DeepFilterNet-family model, got {type(model).__name__}")
        cfg = model.cfg
        self.hop, self.sample_rate = cfg.hop, cfg.sample_rate
        self.spec = _Spec(cfg.hop, cfg.sample_rate, (model.delay_frames + 1) * cfg.hop)
        self.max_streams, self.max_hops = max_streams, max_hops_per_batch
        self.session, self.names, self.axis, self.initial = step_session(model, threads)
        self.state = {k: np.repeat(v, max_streams, axis=self.axis[k]) for k, v in self.initial.items()}
        self.free = list(range(max_streams - 1, -1, -1))
        self.slots: dict[int, Slot] = {}
        self.busy: set[int] = set()  # rows in the batch now running
        self.released: list[int] = []  # rows freed while their batch runs
        self.reopened: list[int] = []  # ... and given to a new stream meanwhile

    # -- streams ---------------------------------------------------------------------------
    def open(self, rate: int) -> Slot:
        """A new stream at ``rate``; ``RuntimeError`` when all ``max_streams`` slots are taken."""
        if not self.free and not self.released:
            raise RuntimeError(f"server full: {self.max_streams} streams")
        live = LiveStream(self.spec, rate)
        if self.free:
            index = self.free.pop()
        else:  # a row whose stream closed while its batch runs: that batch writes it back, so reset it again after
            index = self.released.pop()
            self.reopened.append(index)
        self._reset_row(index)
        slot = Slot(index, live)
        self.slots[index] = slot
        return slot

    def close(self, slot: Slot) -> None:
        """Free the slot at once (a stream that ended, failed or whose client went away)."""
        if self.slots.pop(slot.index, None) is not None:
            (self.released if slot.index in self.busy else self.free).append(slot.index)

    def _rows(self, key: str, index) -> tuple:
        """The index of rows ``index`` (an int or an array) of state ``key`` along its batch axis."""
        where = [slice(None)] * self.state[key].ndim
        where[self.axis[key]] = index
        return tuple(where)

    def _reset_row(self, index: int) -> None:
        for k, v in self.initial.items():
            self.state[k][self._rows(k, slice(index, index + 1))] = v

    def feed(self, slot: Slot, chunk) -> bytes:
        """The caller's samples (float array or int16 PCM bytes) into the stream's hop queue.
        Returns the output already ready for them (int16 PCM): what earlier hops gave beyond the
        samples returned so far, at once, without waiting for the next hop (the stream's output
        is one queue: what a later batch gives comes after it)."""
        _queue(slot, slot.live.push(chunk))
        return slot.live.pull(np.zeros(0, np.float32), pcm=True)

    @staticmethod
    def end(slot: Slot) -> None:
        """No more input: queue the rest and the zeros that bring out the network's delay."""
        _queue(slot, slot.live.push(np.zeros(0, np.float32), last=True))
        slot.final = slot.queued  # hops already taken into a running batch count too

    # -- the network -----------------------------------------------------------------------
    def batches(self) -> list[tuple[list[Slot], np.ndarray]]:
        """The due work: one batch of every stream with a hop waiting, and how many hops each
        runs (all it has, at most ``max_hops_per_batch``). One batch, not one per number of
        waiting hops: a stream's hops can come several at once (a client sending 30 ms chunks,
        or catching up) out of step with the others, and grouping by count made several network
        calls and several event-loop rounds of the same streams per turn."""
        due = [slot for slot in self.slots.values() if slot.pending_hops and not slot.done]
        if not due:
            return []
        return [(due, np.array([min(slot.pending_hops, self.max_hops) for slot in due]))]

    def run(self, slots: list[Slot], hops: np.ndarray, ks=None) -> tuple[np.ndarray, float]:
        """Enhance ``hops`` (a row of hops per slot; slot i's first ``ks[i]`` hops, all of the row
        by default) from the slots' state rows; the new rows are written back. The graph takes
        one hop: call j runs the slots that have a j-th hop (all of them until the shortest
        ends, then a subset). Returns (output rows, seconds the network took)."""
        t0 = time.perf_counter()
        idx = np.array([s.index for s in slots])
        rows = [np.ascontiguousarray(self.state[k][self._rows(k, idx)]) for k in self.names]
        hops = np.ascontiguousarray(hops, dtype=np.float32)
        n_hops = hops.shape[1] // self.hop
        ks = np.full(len(slots), n_hops) if ks is None else np.asarray(ks)
        out = np.zeros_like(hops)
        for j in range(int(ks.max(initial=0))):
            frame = np.ascontiguousarray(hops[:, j * self.hop : (j + 1) * self.hop])
            on = np.flatnonzero(ks > j)
            if len(on) == len(slots):
                first, *rows = self.session.run(None, {"frame": frame, **dict(zip(self.names, rows))})
                out[:, j * self.hop : (j + 1) * self.hop] = first
                continue
            sub = [np.take(r, on, axis=self.axis[k]) for k, r in zip(self.names, rows)]
            first, *new = self.session.run(None, {"frame": frame[on], **dict(zip(self.names, sub))})
            out[on, j * self.hop : (j + 1) * self.hop] = first
            for k, r, v in zip(self.names, rows, new):
                where = [slice(None)] * r.ndim
                where[self.axis[k]] = on
                r[tuple(where)] = v
        for k, v in zip(self.names, rows):
            self.state[k][self._rows(k, idx)] = v
        return out, time.perf_counter() - t0

    def step(self) -> list[tuple[Slot, bytes, bool]]:
        """Run every due hop now; (slot, output, is_last) per slot, the output in int16 PCM.
        Synchronous; the server runs :meth:`run` in its compute thread between :meth:`prepare`
        and :meth:`collect`, which stay in its event loop."""
        results = []
        for slots, ks in self.batches():
            slots, ks, hops = self.prepare(slots, ks)
            if slots:
                results += self.collect(slots, ks, self.run(slots, hops, ks)[0])
        return results

    def prepare(self, slots: list[Slot], ks: np.ndarray) -> tuple[list[Slot], np.ndarray, np.ndarray]:
        """The slots still open, their hop counts and their next hops (a row each, zero-padded to
        the longest); their rows are busy until :meth:`collect`."""
        keep = [i for i, s in enumerate(slots) if self.slots.get(s.index) is s and s.pending_hops >= ks[i]]
        slots, ks = [slots[i] for i in keep], np.asarray(ks)[keep]
        self.busy.update(s.index for s in slots)
        hops = np.zeros((len(slots), int(ks.max(initial=0)) * self.hop), np.float32)
        for i, (s, k) in enumerate(zip(slots, ks)):
            hops[i, : k * self.hop] = s.take(int(k), self.hop)
        return slots, ks, hops

    def collect(self, slots: list[Slot], ks: np.ndarray, out: np.ndarray) -> list[tuple[Slot, bytes, bool]]:
        """The stream outputs of one batch (after :meth:`run`), in int16 PCM; frees the rows of
        streams closed meanwhile."""
        self.busy.clear()
        self.free += self.released
        self.released.clear()
        for index in self.reopened:
            self._reset_row(index)
        self.reopened.clear()
        results = []
        for slot, k, y in zip(slots, ks, out):
            if self.slots.get(slot.index) is not slot:
                continue  # closed while its batch ran
            slot.ran += int(k)
            last = slot.final is not None and slot.ran >= slot.final
            results.append((slot, slot.live.pull(y[: k * self.hop], last=last, pcm=True), last))
            slot.done = slot.done or last
        return results


def _queue(slot: Slot, hops: np.ndarray) -> None:
    if len(hops):
        slot.pending.append(hops)
        slot.pending_hops += len(hops) // slot.live.hop
        slot.queued += len(hops) // slot.live.hop
