"""Tiny HTTP servers on free 127.0.0.1 ports for the live `score` tests: an MJPEG camera that
drops its stream and comes back, and an alert receiver.

`MJPEGCamera` serves `multipart/x-mixed-replace` JPEG frames (what IP cameras and `motion`
serve) at a steady rate. Each connection streams the next `per_connection` frames of its list
and then closes; the first reconnect after a drop is refused with 503 (the camera is still
rebooting), so the client has to back off and try again.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MJPEGCamera:
    def __init__(self, sessions: list[list[np.ndarray]], fps: float = 25.0):
        self.sessions = [[cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in s]
                         for s in sessions]
        self.fps = fps
        self.connections = 0          # GETs answered, refused ones included
        self.served: list[int] = []   # frames sent per streaming connection
        self.refused = 0
        self._lock = threading.Lock()
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with cam._lock:
                    cam.connections += 1
                    k = len(cam.served)
                    refuse = k > 0 and cam.refused < k and k < len(cam.sessions)
                    if refuse:
                        cam.refused += 1
                    elif k < len(cam.sessions):
                        cam.served.append(0)
                if refuse or k >= len(cam.sessions):
                    self.send_response(503)      # rebooting / all sessions served: the client retries
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    for jpg in cam.sessions[k]:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg + b"\r\n")
                        self.wfile.flush()
                        cam.served[k] += 1
                        time.sleep(1.0 / cam.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return
                self.close_connection = True   # the stream drops

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MJPEGCamera:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class AlertReceiver:
    """Collects the JSON bodies POSTed to it."""

    def __init__(self):
        self.events: list[dict] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec.events.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
