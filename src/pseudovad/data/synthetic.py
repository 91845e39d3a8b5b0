"""Synthetic surveillance footage: the offline default dataset.

One fixed camera looks at a textured pedestrian street with two walkways: people on the upper
walkway walk right, people on the lower one walk left, at walking speed, legs swinging. Training
videos hold only that. Test videos add labelled events, like UCSD Ped2's bikes, carts and
skaters:
  fast      a cyclist (rider on two wheels) at 3-4× walking speed
  big       a cart / small vehicle, far larger than a person, at walking speed
  shape     an odd-shaped object (a tumbling box) drifting along a walkway
  against   a person walking against the walkway's flow (hard: looks normal frame by frame)
A frame is anomalous while any part of an event object is in view. Sensor noise and a slight
global flicker are added to every frame, and videos are MJPG-compressed, so a plain
autoencoder does not get a perfect score. Everything is deterministic given the seed.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pseudovad.config import SyntheticConfig
from pseudovad.errors import DataError

EVENT_KINDS = ("fast", "big", "shape", "against")


@dataclass
class Actor:
    kind: str            # walker | fast | big | shape | against
    x: float
    y: float             # foot line / bottom
    v: float             # px per frame, signed
    h: float             # height in px
    tone: int
    phase: float = 0.0
    anomalous: bool = False

    def bbox(self) -> tuple[float, float, float, float]:
        w = self.h * (1.6 if self.kind == "big" else 0.9 if self.kind in ("fast", "shape") else 0.45)
        return self.x - w / 2, self.y - self.h, self.x + w / 2, self.y


class Scene:
    """The fixed camera view: background texture and walkway geometry."""

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg
        self.h, self.w = cfg.height, cfg.width
        rng = np.random.default_rng(cfg.seed)
        low = rng.normal(0, 1, (max(2, self.h // 12), max(2, self.w // 12)))
        low = cv2.resize(low, (self.w, self.h), interpolation=cv2.INTER_CUBIC)
        fine = cv2.GaussianBlur(rng.normal(0, 1, (self.h, self.w)), (0, 0), 0.8)
        bg = 118 + 14 * low + 6 * fine
        s = self.h / 120.0
        # walkway edges and paving joints: the structure an autoencoder must learn to redraw
        self.lanes = [(0.30 * self.h, 0.52 * self.h, +1), (0.62 * self.h, 0.92 * self.h, -1)]
        for top, bot, _ in self.lanes:
            bg[int(top) - max(1, int(2 * s)):int(top)] -= 28
            bg[int(bot):int(bot) + max(1, int(2 * s))] += 22
            for x in range(0, self.w, max(8, int(18 * s))):
                bg[int(top):int(bot), x:x + 1] += 9
        grass = np.arange(self.h) < 0.22 * self.h
        bg[grass] = bg[grass] * 0.75 + 10 * np.sin(np.arange(self.w) / 3.0)
        self.background = np.clip(bg, 0, 255).astype(np.float32)
        self.scale = s

    def lane_y(self, rng: np.random.Generator, lane: int) -> float:
        top, bot, _ = self.lanes[lane]
        return float(rng.uniform(top + 0.55 * (bot - top), bot))


def _draw(img: np.ndarray, a: Actor, s: float) -> None:
    x, y, h, tone = a.x, a.y, a.h, float(a.tone)
    ix = lambda v: int(round(v))  # noqa: E731
    if a.kind in ("walker", "against"):
        hip = y - 0.48 * h
        swing = math.sin(a.phase) * 0.18 * h
        cv2.line(img, (ix(x), ix(hip)), (ix(x + swing), ix(y)), tone, max(1, ix(0.09 * h)))
        cv2.line(img, (ix(x), ix(hip)), (ix(x - swing), ix(y)), tone, max(1, ix(0.09 * h)))
        cv2.ellipse(img, (ix(x), ix(y - 0.66 * h)), (max(1, ix(0.15 * h)), max(1, ix(0.22 * h))), 0, 0, 360, tone, -1)
        cv2.circle(img, (ix(x), ix(y - 0.93 * h)), max(1, ix(0.09 * h)), tone, -1)
    elif a.kind == "fast":
        r = 0.2 * h
        for dx in (-0.3 * h, 0.3 * h):
            cv2.circle(img, (ix(x + dx), ix(y - r)), max(1, ix(r)), tone, max(1, ix(0.05 * h)))
        cv2.line(img, (ix(x - 0.3 * h), ix(y - r)), (ix(x + 0.3 * h), ix(y - r)), tone, max(1, ix(0.05 * h)))
        cv2.ellipse(img, (ix(x), ix(y - 0.62 * h)), (max(1, ix(0.13 * h)), max(1, ix(0.2 * h))), 0, 0, 360, tone, -1)
        cv2.circle(img, (ix(x), ix(y - 0.9 * h)), max(1, ix(0.08 * h)), tone, -1)
    elif a.kind == "big":
        x0, y0, x1, y1 = a.bbox()
        cv2.rectangle(img, (ix(x0), ix(y0 + 0.25 * h)), (ix(x1), ix(y1 - 0.12 * h)), tone, -1)
        cv2.rectangle(img, (ix(x0 + 0.2 * h), ix(y0)), (ix(x1 - 0.2 * h), ix(y0 + 0.25 * h)), tone * 0.8, -1)
        for dx in (x0 + 0.25 * h, x1 - 0.25 * h):
            cv2.circle(img, (ix(dx), ix(y1 - 0.1 * h)), max(1, ix(0.1 * h)), 30.0, -1)
    else:  # shape: a tumbling box
        c, r = (x, y - 0.5 * h), 0.42 * h
        ang = a.phase
        pts = np.array([[c[0] + r * math.cos(ang + k * math.pi / 2), c[1] + r * math.sin(ang + k * math.pi / 2)]
                        for k in range(4)], np.int32)
        cv2.fillConvexPoly(img, pts, tone)


class _Video:
    def __init__(self, scene: Scene, rng: np.random.Generator, events: list[tuple[str, int]]):
        self.scene, self.rng = scene, rng
        self.events = sorted(events, key=lambda e: e[1])
        self.actors: list[Actor] = []
        for _ in range(scene.cfg.walkers):
            self.actors.append(self._walker(x=float(rng.uniform(0, scene.w))))

    def _walker(self, x: float | None = None, kind: str = "walker", lane: int | None = None) -> Actor:
        rng, sc = self.rng, self.scene
        lane = int(rng.integers(0, 2)) if lane is None else lane
        direction = sc.lanes[lane][2]
        s = sc.scale
        v = direction * rng.uniform(0.7, 1.3) * s
        h = rng.uniform(16, 21) * s * (0.85 if lane == 0 else 1.0)
        if kind == "against":
            v = -v
        if x is None:
            x = -0.3 * h if v > 0 else sc.w + 0.3 * h
        tone = int(rng.choice([rng.integers(35, 80), rng.integers(165, 215)]))
        return Actor(kind, x, sc.lane_y(rng, lane), v, h, tone, phase=float(rng.uniform(0, 6.28)),
                     anomalous=(kind != "walker"))

    def _event(self, kind: str) -> Actor:
        rng, sc = self.rng, self.scene
        s = sc.scale
        if kind == "against":
            return self._walker(kind="against")
        lane = int(rng.integers(0, 2))
        direction = sc.lanes[lane][2]
        if kind == "fast":
            v, h = direction * rng.uniform(3.0, 4.2) * s, rng.uniform(18, 22) * s
        elif kind == "big":
            v, h = direction * rng.uniform(0.8, 1.2) * s, rng.uniform(26, 32) * s
        else:
            v, h = direction * rng.uniform(0.9, 1.5) * s, rng.uniform(12, 16) * s
        w = h * 1.6
        x = -w / 2 if v > 0 else sc.w + w / 2
        tone = int(rng.integers(40, 90) if rng.random() < 0.5 else rng.integers(160, 210))
        return Actor(kind, x, sc.lane_y(rng, lane), v, h, tone, anomalous=True)

    def step(self, t: int) -> None:
        sc, rng = self.scene, self.rng
        while self.events and self.events[0][1] <= t:
            self.actors.append(self._event(self.events.pop(0)[0]))
        for a in self.actors:
            a.x += a.v
            a.phase += abs(a.v) / (0.35 * a.h) if a.kind != "shape" else 0.08
        self.actors = [a for a in self.actors if -2 * a.h < a.x < sc.w + 2 * a.h]
        normal = sum(1 for a in self.actors if not a.anomalous)
        if normal < sc.cfg.walkers and rng.random() < 0.08:
            self.actors.append(self._walker())

    def render(self, t: int) -> tuple[np.ndarray, int]:
        sc, rng = self.scene, self.rng
        img = sc.background.copy()
        # far-to-near order so nearer people overlap farther ones
        for a in sorted(self.actors, key=lambda a: a.y):
            _draw(img, a, sc.scale)
        img += rng.normal(0, sc.cfg.noise, img.shape).astype(np.float32)
        img *= 1.0 + 0.015 * math.sin(t / 7.0)
        label = int(any(a.anomalous and a.bbox()[2] > 0 and a.bbox()[0] < sc.w for a in self.actors))
        return np.clip(img, 0, 255).astype(np.uint8), label


def _events_for(video_index: int, cfg: SyntheticConfig, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Event kinds cycle over test videos so every kind appears; starts leave normal frames first."""
    n = cfg.frames
    kinds = [EVENT_KINDS[video_index % len(EVENT_KINDS)]]
    if cfg.anomaly_fraction > 0.3 and n >= 80:
        kinds.append(EVENT_KINDS[(video_index + 2) % len(EVENT_KINDS)])
    starts = sorted(int(rng.uniform(0.15, 0.75) * n) for _ in kinds)
    return list(zip(kinds, starts))


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    h, w = frames[0].shape[:2]
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), float(fps), (w, h), True)
    if not writer.isOpened():
        raise DataError(f"{path}: OpenCV cannot write MJPG video here")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    finally:
        writer.release()
    tmp.replace(path)


def render_video(cfg: SyntheticConfig, split: str, index: int) -> tuple[list[np.ndarray], np.ndarray]:
    scene = Scene(cfg)
    rng = np.random.default_rng([cfg.seed, 1 if split == "testing" else 0, index])
    events = _events_for(index, cfg, rng) if split == "testing" else []
    video = _Video(scene, rng, events)
    for t in range(-40, 0):  # warm up so the street is populated from frame 0 (events start later)
        video.step(t)
    frames, labels = [], []
    for t in range(cfg.frames):
        video.step(t)
        img, lab = video.render(t)
        frames.append(img)
        labels.append(lab)
    return frames, np.array(labels, np.uint8)


def generate(cfg: SyntheticConfig, out: str | Path) -> dict:
    """Write <out>/{training,testing}/videos/NN.avi and <out>/testing/{labels.csv,frame_labels.npy};
    with `test_videos: 0` only <out>/training (normal footage and nothing else, as a camera owner has it)."""
    out = Path(out)
    summary = {"training": 0, "testing": 0, "anomalous_frames": 0, "test_frames": 0}
    all_labels = []
    for split, count in (("training", cfg.train_videos), ("testing", cfg.test_videos)):
        vdir = out / split / "videos"
        vdir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            frames, labels = render_video(cfg, split, i)
            write_video(vdir / f"{i + 1:02d}.avi", frames, cfg.fps)
            summary[split] += 1
            if split == "testing":
                all_labels.append((f"{i + 1:02d}", labels))
    if not all_labels:
        return summary
    flat = np.concatenate([lab for _, lab in all_labels])
    summary["anomalous_frames"], summary["test_frames"] = int(flat.sum()), int(flat.size)
    tdir = out / "testing"
    tmp_csv = tdir / ".labels.csv.tmp"
    with open(tmp_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame", "label"])
        for vid, lab in all_labels:
            for j, v in enumerate(lab):
                w.writerow([vid, j, int(v)])
    tmp_csv.replace(tdir / "labels.csv")
    with open(tdir / ".frame_labels.npy.tmp", "wb") as f:
        np.save(f, flat)
    (tdir / ".frame_labels.npy.tmp").replace(tdir / "frame_labels.npy")
    return summary
