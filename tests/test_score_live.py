"""`score` on a live source: an HTTP MJPEG camera served by the test on 127.0.0.1 that drops its
stream and comes back, segment JSON lines on stdout, alerts POSTed to a local receiver, and a
dead alert URL that must not stop scoring."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import torch

from pseudovad import calibration
from pseudovad import config as config_mod
from pseudovad.data.sources import convert
from pseudovad.data.synthetic import render_video
from pseudovad.evaluation.streaming import score_video
from pseudovad.models import build_model
from pseudovad.models.model_file import model_meta, save_model
from pseudovad.scoring.alerts import Alerts
from pseudovad.scoring.stream import LiveInput, redact
from pseudovad.stages import score
from tests.conftest import tiny_cfg
from tests.mlflow_server import free_port
from tests.stream_servers import AlertReceiver, MJPEGCamera

SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}}
LIVE = {"score": {"min_segment": 3, "alert_timeout_s": 1.0, "alert_retries": 2, "reconnect_max_s": 1.0}}
BURST = 12      # anomalous frames in each session


@pytest.fixture(scope="module")
def live_setup(tmp_path_factory):
    """A tiny model calibrated on the camera's normal footage (as the camera sends it: JPEG), and
    camera sessions: that street with a burst of noise frames (nothing like it) in the middle."""
    root = tmp_path_factory.mktemp("live")
    cfg = tiny_cfg(root, **SMALL, **LIVE)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    street, _ = render_video(cfg.synthetic, "training", 1)
    street = [cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR) for f in street]
    small = np.stack([convert(f, tuple(cfg.data.size), 1) for f in street])
    model = root / "model.pt"
    save_model(model, net, model_meta(cfg, calibration=calibration.calibrate(score_video(net, model_meta(cfg), small, "cpu", 4))))
    rng = np.random.default_rng(0)

    def session(k: int) -> list[np.ndarray]:
        noise = [rng.integers(0, 255, street[0].shape, dtype=np.uint8) for _ in range(BURST)]
        return street[:20] + noise + street[20:40]

    params = root / "params.yaml"
    params.write_text(config_mod.dump(cfg))
    return cfg, model, [session(0), session(1)], params


def test_live_mjpeg_stream_survives_a_drop_emits_segment_lines_and_alerts(live_setup, tmp_path):
    """The CLI on http://127.0.0.1:<port>/stream.mjpg: the camera streams one session, drops,
    refuses the first reconnect, streams a second session; Ctrl-C ends scoring cleanly."""
    cfg, model, sessions, params = live_setup
    out = tmp_path / "live"
    env = {**os.environ, "PSEUDOVAD_NO_PROGRESS": "1"}
    with MJPEGCamera(sessions, fps=10) as cam, AlertReceiver() as alerts:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pseudovad", "score", "-P", str(params), cam.url, "--model", str(model),
             "--out", str(out), "--alert-url", alerts.url, "--duration", "300", "--threshold", "0.99"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        lines: list[dict] = []

        def read() -> None:
            for line in proc.stdout:
                lines.append(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        n1 = len(sessions[0])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            segs = [e for e in lines if e["event"] == "segment"]
            if any(e["start_frame"] >= n1 for e in segs) and len(cam.served) == 2 and cam.served[1] == len(sessions[1]):
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        # a clean stop waits, each bounded, on the capture thread (open/read time-out + 5 s) and on
        # queued alerts (time-out × tries, twice): up to ~50 s on a loaded machine
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"score did not stop within 120 s of Ctrl-C; its stderr:\n{proc.communicate()[1]}")
        reader.join(timeout=10)
        err = proc.stderr.read()
    assert rc == 0, err
    segs = [e for e in lines if e["event"] == "segment"]
    # one segment per burst: frames of the first session, then (after the reconnect) of the second
    assert [e["start_frame"] < n1 for e in segs] == [True, False], (segs, err)
    for e in segs:
        assert e["frames"] >= cfg.score.min_segment and e["peak_score"] >= 0.99
        assert {"start_time", "end_time", "start_s", "end_s"} <= set(e)
    starts = [e for e in lines if e["event"] == "anomaly_start"]
    assert [e["start_frame"] for e in starts] == [e["start_frame"] for e in segs]   # alert at the start, too
    assert cam.refused >= 1 and "reconnect" in err
    s = json.loads((out / "summary.json").read_text())
    assert s["live"] and s["reconnects"] >= 1 and s["segments_found"] == 2 and not s["running"]
    assert s["stop_reason"] == "interrupted (Ctrl-C)"
    assert s["provenance"]["input"]["sha256"] is None and "not hashed" in s["provenance"]["input"]["note"]
    # the receiver got the same segments, in order
    posted = [e for e in alerts.events if e["event"] == "segment"]
    assert [e["start_frame"] for e in posted] == [e["start_frame"] for e in segs]
    assert s["alerts"]["sent"] == len(alerts.events) and s["alerts"]["failed"] == 0
    # rolling CSV: provenance lines, then one row per scored frame, wall-clock times
    csvs = sorted(out.glob("scores-*.csv"))
    assert csvs
    rows = [ln for ln in csvs[0].read_text().splitlines() if not ln.startswith("#")]
    assert rows[0] == "frame,time_s,psnr,score,flagged,wall_time" and len(rows) - 1 == s["frames"]
    assert [json.loads(ln)["start_frame"] for ln in (out / "segments.jsonl").read_text().splitlines()] == \
        [e["start_frame"] for e in segs]


def test_live_scoring_goes_on_when_the_alert_url_is_dead(live_setup, tmp_path):
    cfg, model, sessions, _ = live_setup
    dead = f"http://127.0.0.1:{free_port()}/nothing-listens-here"
    got: list[dict] = []
    stop = threading.Event()

    def events(e: dict) -> None:
        got.append(e)
        if e["event"] == "segment":
            stop.set()

    with MJPEGCamera(sessions[:1], fps=10) as cam:
        s = score.run(cfg, cam.url, model, tmp_path / "out", alert_url=dead, duration=120, events=events, stop=stop,
                      threshold=0.99)
    assert [e["event"] for e in got if e["event"] != "domain_shift"][:2] == ["anomaly_start", "segment"]
    assert s["segments_found"] == 1 and s["frames"] > 0
    assert s["alerts"]["sent"] == 0 and s["alerts"]["failed"] >= 1 and s["alerts"]["last_error"]


def test_live_input_drops_the_oldest_frames_when_the_scorer_is_behind(live_setup):
    """Nobody reads the queue: it stays at queue_frames, the rest is counted as dropped."""
    _, _, sessions, _ = live_setup
    with MJPEGCamera(sessions[:1], fps=200) as cam:
        src = LiveInput(cam.url, queue_frames=4, reconnect_max_s=0.5).start()
        deadline = time.monotonic() + 60
        while src.read < len(sessions[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        src.close()
    assert src.read == len(sessions[0])
    assert src.q.qsize() == 4 and src.dropped == src.read - 4
    got = [src.q.get_nowait().seq for _ in range(4)]
    assert got == list(range(src.read - 4, src.read))          # the newest frames are the ones kept


def test_alerts_never_block_and_count_what_was_not_delivered():
    dead = f"http://127.0.0.1:{free_port()}/"
    a = Alerts(dead, timeout_s=0.5, retries=1, capacity=2)
    for i in range(50):
        a.post({"event": "segment", "i": i})      # only enqueues: a full queue drops, never waits
    r = a.close(wait_s=10)
    assert r["sent"] == 0 and r["failed"] + r["undelivered"] == 50
    with pytest.raises(Exception, match="http"):
        Alerts("ftp://x/", 1, 1)


def test_stream_passwords_never_reach_the_outputs():
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/stream1") == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert redact("http://cam.local/mjpg") == "http://cam.local/mjpg"


def test_a_growing_file_is_followed_every_frame_once(tmp_path):
    """--follow: a recording still being written is read as it grows, nothing dropped or repeated,
    even when the reader gets ahead of the writer (the file's end is reopened and skipped to)."""
    path = tmp_path / "recording.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    frame = lambda i: np.full((48, 64, 3), 4 * i, np.uint8)      # noqa: E731  (frame i has grey 4·i)
    for i in range(10):
        w.write(frame(i))
    src = LiveInput(str(path), queue_frames=100, reconnect_max_s=0.5, follow=True).start()
    for i in range(10, 60):
        w.write(frame(i))
        time.sleep(0.02)
    w.release()
    deadline = time.monotonic() + 60
    while src.read < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    src.close()
    got = [src.q.get_nowait() for _ in range(src.q.qsize())]
    assert src.read == 60 and src.dropped == 0 and src.reconnects == 0
    assert [f.seq for f in got] == list(range(60))
    assert [round(float(f.image.mean()) / 4) for f in got] == list(range(60))   # in order, each once
