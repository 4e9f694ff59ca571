"""A daemon thread that runs one round of work every ``interval_s`` seconds until stopped: the
listener's stability monitor and reconciliation sweep are both one."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PeriodicThread:
    """Subclasses define ``tick()`` (one round). A round that raises is logged and the thread goes
    on (the registry or the broker may be briefly unavailable); ``initial_delay_s`` is waited
    before the first round."""

    name = "followup-periodic"

    def __init__(self, interval_s: float, initial_delay_s: float = 0.0) -> None:
        if interval_s <= 0:
            raise ValueError("the interval must be > 0")
        self.interval_s = float(interval_s)
        self.initial_delay_s = float(initial_delay_s)
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def tick(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loop(self) -> None:
        self._stop.wait(self.initial_delay_s)
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # never let the thread die
                log.exception("%s: unexpected error", self.name)
            self.rounds += 1
            self._stop.wait(self.interval_s)

    def start(self):
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
