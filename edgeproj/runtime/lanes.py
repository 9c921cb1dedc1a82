"""Lanes that each take the next tiles when they finish: projection work spread over CPU cores.

With the stop rules on, tiles stop after very different numbers of steps (2 to 16 on the demo). A batch
split once between lanes leaves one lane idle while the other finishes its slowest tile; a lane here
instead takes its next tiles from one queue shared by every job, in submission order. A single-threaded
step costs the same per tile at any batch size, so a lane that holds several tiles loses nothing as
long as the queue still has work for the others: chunks shrink as the queue empties ("guided"
scheduling), down to one tile at the end of a frame, and the next frame's tiles start while the last
ones of this frame finish.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from edgeproj.runtime.backends.base import Runner
from edgeproj.runtime.loop import BatchResult, run_projection
from edgeproj.runtime.manifest import Projection


@dataclass(eq=False)  # jobs are found by identity (their arrays have no truth value)
class _Job:
    x0: np.ndarray
    weight: np.ndarray | None
    settings: Projection
    final: bool
    future: Future = field(default_factory=Future)
    taken: int = 0
    done: int = 0
    parts: dict[int, BatchResult] = field(default_factory=dict)

    @property
    def left(self) -> int:
        return len(self.x0) - self.taken


class LanePool:
    """One worker thread per lane runner; `submit` returns a Future of the job's BatchResult.

    A job's result is in tile order whatever lane took each chunk. A failure in any chunk fails its job
    (its remaining tiles are dropped) and leaves other jobs running.
    """

    def __init__(self, runners: list[Runner], max_chunk: int):
        if not runners:
            raise ValueError("a lane pool needs at least one runner")
        self.lanes = len(runners)
        self.max_chunk = max(1, max_chunk)
        self._jobs: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(r,), name=f"edgeproj-lane{i}", daemon=True) for i, r in enumerate(runners)
        ]
        for t in self._threads:
            t.start()

    def submit(self, x0: np.ndarray, weight: np.ndarray | None, settings: Projection, final: bool = True) -> Future:
        """Queue the projection of tiles x0 (N x C x H x W); the Future holds one BatchResult."""
        job = _Job(np.ascontiguousarray(x0, np.float32), weight, settings, final)
        if len(x0) == 0:
            job.future.set_exception(ValueError("no tiles to project"))
            return job.future
        with self._cv:
            if self._closed:
                raise RuntimeError("the lane pool is closed")
            self._jobs.append(job)
            self._cv.notify_all()
        return job.future

    def _chunk(self, job: _Job) -> int:
        if job.settings.stop.is_off:  # equal work per tile: an equal share per lane is optimal
            share = math.ceil(len(job.x0) / self.lanes)
        else:
            pending = sum(j.left for j in self._jobs)
            share = math.ceil(pending / (2 * self.lanes))
        return max(1, min(self.max_chunk, share, job.left))

    def _take(self) -> tuple[_Job, int, int] | None:
        with self._cv:
            while True:
                for job in list(self._jobs):
                    if job.taken == 0 and not job.future.set_running_or_notify_cancel():
                        self._drop(job)  # cancelled by its caller before any lane took it
                        continue
                    if job.left > 0:
                        a = job.taken
                        job.taken += self._chunk(job)
                        return job, a, job.taken
                if self._closed:
                    return None
                self._cv.wait()

    def _work(self, runner: Runner) -> None:
        # Nothing may escape this loop: a lane that died would leave its queue to the others, silently.
        while (item := self._take()) is not None:
            job, a, b = item
            if job.future.done():  # an earlier chunk failed: the job is over
                continue
            try:
                w = None if job.weight is None else job.weight[a:b]
                res = run_projection(runner, job.x0[a:b], job.settings, w, final=job.final)
                with self._cv:
                    job.parts[a] = res
                    job.done += b - a
                    finished = job.done == len(job.x0)
                    if finished:
                        self._drop(job)
                if finished:
                    self._settle(job, BatchResult.concat([job.parts[k] for k in sorted(job.parts)]))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                with self._cv:
                    self._drop(job)
                self._settle(job, exc)

    def _settle(self, job: _Job, outcome) -> None:
        """Set the job's result or exception once; a second outcome (another failing chunk) is dropped."""
        with self._cv:
            if job.future.done():
                return
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _drop(self, job: _Job) -> None:
        job.taken = len(job.x0)
        if job in self._jobs:
            self._jobs.remove(job)

    def close(self) -> None:
        """Finish the chunks already running, then stop the workers; queued jobs fail."""
        with self._cv:
            self._closed = True
            queued = [j for j in self._jobs if not j.future.done()]
            for j in queued:
                self._drop(j)
            self._cv.notify_all()
        for t in self._threads:
            t.join()
        for j in queued:
            self._settle(j, RuntimeError("the projector was closed before this projection ran"))
