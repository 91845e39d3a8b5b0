"""`Alerts` POSTs JSON events to `--alert-url` from a background thread with time-outs and retries;
its queue is bounded too, so a dead alert endpoint costs scoring nothing.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from pseudovad.errors import DataError

log = logging.getLogger(__name__)


class Alerts:
    """POST JSON events to a URL from a background thread: time-outs, retries, never blocking."""

    def __init__(self, url: str, timeout_s: float = 5.0, retries: int = 3, capacity: int = 1000):
        if not url.lower().startswith(("http://", "https://")):
            raise DataError(f"--alert-url {url}: must be an http:// or https:// URL")
        self.url, self.timeout_s, self.retries = url, timeout_s, retries
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=capacity)
        self.sent = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="pseudovad-alerts", daemon=True)
        self._thread.start()

    def post(self, event: dict[str, Any]) -> None:
        try:
            self.q.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _send(self, event: dict[str, Any]) -> None:
        body = json.dumps(event).encode()
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "pseudovad-score"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
            r.read()

    def _loop(self) -> None:
        while True:
            event = self.q.get()
            if event is None:
                return
            for attempt in range(self.retries):
                try:
                    self._send(event)
                    self.sent += 1
                    break
                except (OSError, urllib.error.URLError, ValueError) as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    if attempt + 1 < self.retries:
                        time.sleep(min(2.0 ** attempt, 10.0))
            else:
                self.failed += 1
                log.warning("--alert-url %s: alert not delivered after %d tries (%s)", self.url, self.retries,
                            self.last_error)

    def close(self, wait_s: float | None = None) -> dict[str, Any]:
        """Deliver what is queued (up to `wait_s`, default one time-out per try), then report."""
        wait_s = self.timeout_s * self.retries + 1 if wait_s is None else wait_s
        try:
            self.q.put(None, timeout=wait_s)
        except queue.Full:
            pass
        self._thread.join(timeout=wait_s)
        return {"url": self.url, "sent": self.sent, "failed": self.failed,
                "undelivered": self.dropped + (self.q.qsize() if self._thread.is_alive() else 0),
                "last_error": self.last_error}
