"""Which signed requests were seen before: replay protection that keeps up with concurrent load.

Every request's keys (its signature, its trigger or event id) must be recorded in the state
database before it is acted on, so a replay is refused by every bot process on that database.
Recording each request in a transaction of its own made the database the bottleneck (SQLite
serialises writers, and its busy handler sleeps). Here:

- a key this process saw within the window is refused at once, from memory (a replay to the
  same process never waits for the database);
- the others are recorded by one writer thread in **group commits**: the keys of all the
  requests waiting are inserted in one transaction (``INSERT … ON CONFLICT DO NOTHING RETURNING``),
  and each request learns whether all its keys were new. A request waits for the commit that
  holds its keys, as before, so the cross-process guarantee is unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future


class Sightings:
    """``first(keys)``: True when none of ``keys`` was seen within ``window`` seconds (see the module
    docstring). ``record(keys)`` inserts keys in one transaction and returns those that were new."""

    def __init__(
        self, record: Callable[[list[str]], set[str]], window: float, clock: Callable[[], float] = time.monotonic
    ):
        self._record, self.window, self._clock = record, window, clock
        self._lock = threading.Condition()
        self._pending: list[tuple[list[str], Future[bool]]] = []
        self._recent: dict[str, float] = {}  # key -> when this process first saw it
        self._writer: threading.Thread | None = None
        self.commits = 0  # transactions, for the curious (and the tests)

    def first(self, keys: list[str]) -> bool:
        now = self._clock()
        future: Future[bool] = Future()
        with self._lock:
            if any(now - self._recent.get(k, -1e18) <= self.window for k in keys):
                return False  # this process saw it: a replay, no need to ask the database
            for k in keys:
                self._recent[k] = now
            if len(self._recent) > 100_000:
                self._forget(now)
            self._pending.append((keys, future))
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write, name="sightings", daemon=True)
                self._writer.start()
            self._lock.notify()
        return future.result()  # the database's answer, or its error

    def _forget(self, now: float) -> None:
        self._recent = {k: t for k, t in self._recent.items() if now - t <= self.window}

    def _write(self) -> None:
        while True:
            with self._lock:
                if not self._lock.wait_for(lambda: self._pending, timeout=30):
                    self._writer = None
                    return  # idle: a new writer starts with the next request
                batch, self._pending = self._pending, []
            keys = list(dict.fromkeys(k for ks, _ in batch for k in ks))
            try:
                new = self._record(keys)
            except BaseException as exc:  # every request of the batch gets the error (the gate: 503)
                with self._lock:
                    for ks, _ in batch:  # not recorded: a retry of the same request is not a replay here
                        for k in ks:
                            self._recent.pop(k, None)
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.commits += 1
            claimed: set[str] = set()
            for ks, future in batch:  # a key twice in one batch: only the first request has it
                ok = all(k in new and k not in claimed for k in ks)
                claimed.update(ks)
                future.set_result(ok)
