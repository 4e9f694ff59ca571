"""Hand stable studies to the workers: a study is stable once no instance arrived for
``quiet_seconds``.

The claim ``receiving -> stable`` is an atomic conditional UPDATE in the registry, so any number
of monitors (threads, processes, hosts sharing a PostgreSQL registry) can run side by side and a
study is still handed over exactly once per quiet period. When the hand-over itself fails (for
example the Celery broker is down), the study is put back to ``receiving`` and claimed again at
the next round; nothing is lost. After a round whose hand-overs all failed the monitor waits
before the next one (2, 4, 8 .. 60 s while the failures go on), so a broker outage costs one
error line per wait, not one per poll; the listener keeps receiving meanwhile (its store and
registry do not need Redis). A duplicate instance counts as activity (the sender is resending),
and a monitor just started waits one quiet period before its first round.

Logs carry Study Instance UIDs and counts only, never patient identifiers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from followup.service.periodic import PeriodicThread
from followup.states import IllegalTransition, StudyState

log = logging.getLogger(__name__)


class StabilityMonitor(PeriodicThread):
    """A daemon thread that polls ``registry.claim_stable_studies`` every ``poll_seconds``.

    A listener just (re)started waits one quiet period first: a sender cut off by the restart
    gets that long to resume before a half-received study is declared stable."""

    name = "followup-stability"

    def __init__(self, registry, quiet_seconds: float, on_stable: Callable[[str], None],
                 poll_seconds: float = 1.0) -> None:
        if quiet_seconds < 0:
            raise ValueError("quiet_seconds must be >= 0")
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be > 0")
        super().__init__(poll_seconds, initial_delay_s=quiet_seconds)
        self.registry = registry
        self.quiet_seconds = float(quiet_seconds)
        self.on_stable = on_stable
        self.handed_over = 0  # studies passed to on_stable successfully
        self.failed = 0  # hand-overs that raised (study put back to receiving)
        self.max_backoff_seconds = 60.0
        self._failures_in_a_row = 0
        self._resume_at = 0.0  # monotonic time before which no round is made (after failures)

    # --- one round ---------------------------------------------------------------------------
    def run_once(self) -> list[str]:
        """Claim the studies that became stable and hand each over; return the ones handed over."""
        if time.monotonic() < self._resume_at:
            return []
        try:
            claimed = self.registry.claim_stable_studies(self.quiet_seconds)
        except Exception as exc:  # database unavailable: try again at the next poll
            log.error("stability: claiming stable studies failed: %s", type(exc).__name__)
            return []
        done = []
        for uid in claimed:
            try:
                self.on_stable(uid)
            except Exception as exc:
                self.failed += 1
                # The exception text could in principle carry anything; log its type only.
                log.error("stability: hand-over of study %s failed (%s); back to receiving",
                          uid, type(exc).__name__)
                try:
                    self.registry.mark_study(uid, StudyState.RECEIVING)
                except IllegalTransition as exc2:  # no longer stable (new images reopened it): as wanted
                    log.info("stability: study %s left as it is (%s)", uid, exc2)
                except Exception as exc2:
                    log.critical("stability: could not put study %s back to receiving (%s)",
                                 uid, type(exc2).__name__)
                continue
            self.handed_over += 1
            done.append(uid)
            log.info("stability: study %s stable and handed over", uid)
        if claimed and not done:
            self._back_off()
        elif done:
            self._failures_in_a_row = 0
        return done

    def _back_off(self) -> None:
        self._failures_in_a_row += 1
        wait = min(self.max_backoff_seconds, 2.0 ** self._failures_in_a_row)
        self._resume_at = time.monotonic() + wait
        log.warning("stability: next hand-over in %.0f s", wait)

    def tick(self) -> None:
        self.run_once()
