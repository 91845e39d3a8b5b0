"""LNTRA's patch pseudo anomalies (Astrid et al. 2021, "SmoothMixS"): a foreign object with a
smooth border pasted into a normal clip, moving through it. F's target is the clean clip.

Per clip (all draws from the caller's generator, so a resumed run pastes the same patches):
- size: each side U(0, max_size) × the frame side, at least 10 px (LNTRA: α, max_size 0.5);
- motion: the centre starts anywhere in the frame and takes a random step of up to `max_move`
  pixels per axis per frame, kept inside the frame (LNTRA: β, max_move 10 at 256×256);
- footprint: 1 on the patch's box, falling linearly to 0 outside it over 10% of its half side
  (LNTRA's smooth border) plus one pixel, so that even a 10 px patch has a soft edge; outside
  the footprint the clip is untouched, bit for bit;
- the object: an image from a folder (LNTRA: CIFAR-100, which is not available offline) or a
  built-in procedural source of textured shapes (the default), greyscale for 1-channel footage.

One difference from LNTRA's released code, on purpose: there the object image is stretched to
the whole frame and the moving box is a window onto that fixed image, so the content under the
window changes as it moves; here the object is resized to the box and moves with it, i.e. a
foreign object travelling through the scene, which is what the paper describes.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as Fn

from pseudovad.errors import ConfigError, DataError

BORDER = 0.1        # the smooth border's width, as a share of the patch's half side (LNTRA)
MIN_SIDE = 10       # the smallest patch side in pixels (LNTRA)
TEXTURE = 32        # side of a procedural object before it is resized to its patch
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
RANGES = {"tanh": (-1.0, 1.0), "unit": (0.0, 1.0)}


# --- where the patch is, frame by frame ------------------------------------------------------

def draw_motion(batch: int, length: int, frame_hw: tuple[int, int], max_size: float, max_move: int,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(size (B, 2), centre (B, L, 2)) in pixels, (height, width) / (row, column) order."""
    sides = torch.tensor(frame_hw, dtype=torch.long)
    share = torch.rand(batch, 2, generator=gen) * max_size
    size = torch.maximum((share * sides).long(), torch.clamp(sides, max=MIN_SIDE))
    size = torch.minimum(size, sides)
    start = (torch.rand(batch, 2, generator=gen) * sides).long()
    steps = torch.randint(-max_move, max_move + 1, (batch, max(length - 1, 0), 2), generator=gen)
    centre = [start]
    for t in range(length - 1):   # a walk kept inside the frame, clamped at every step (LNTRA)
        centre.append(torch.minimum(torch.clamp(centre[-1] + steps[:, t], min=0), sides))
    return size, torch.stack(centre, dim=1)


def footprint(size: torch.Tensor, centre: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
    """Alpha (B, L, H, W) in [0, 1]: 1 on each frame's box [centre − side//2, centre + side//2),
    falling linearly to 0 over BORDER · side//2 + 1 pixels outside it, 0 beyond."""
    H, W = frame_hw

    def axis(n: int, side: torch.Tensor, c: torch.Tensor) -> torch.Tensor:   # (B, L, n)
        half = (side // 2).to(torch.float32)[:, None, None]
        ramp = BORDER * half + 1.0
        pos = torch.arange(n, dtype=torch.float32)[None, None, :]
        lo = c[..., None].to(torch.float32) - half              # the box is [c − half, c + half)
        hi = c[..., None].to(torch.float32) + half - 1
        outside = torch.clamp(torch.maximum(lo - pos, pos - hi), min=0.0)
        return torch.clamp(1.0 - outside / ramp, min=0.0)

    ay = axis(H, size[:, 0], centre[..., 0])
    ax = axis(W, size[:, 1], centre[..., 1])
    return ay[..., :, None] * ax[..., None, :]


def object_grid(size: torch.Tensor, centre: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
    """grid_sample coordinates (B, L, H, W, 2) that map each frame's box onto an object image."""
    H, W = frame_hw
    half = (size // 2).clamp(min=1).to(torch.float32)                       # (B, 2)
    ys = torch.arange(H, dtype=torch.float32) + 0.5
    xs = torch.arange(W, dtype=torch.float32) + 0.5
    gy = (ys[None, None, :] - centre[..., 0, None].float()) / half[:, None, 0, None]   # (B, L, H)
    gx = (xs[None, None, :] - centre[..., 1, None].float()) / half[:, None, 1, None]   # (B, L, W)
    B, L = centre.shape[:2]
    return torch.stack([gx[:, :, None, :].expand(B, L, H, W), gy[:, :, :, None].expand(B, L, H, W)], dim=-1)


# --- what is pasted ------------------------------------------------------------------------

class ProceduralShapes:
    """Textured shapes: a rectangle, ellipse or diamond filled with stripes, a checkerboard, a
    gradient or smooth blobs, two random intensities (per channel for colour footage).

    `draw(n, channels, gen)` → content (n, C, S, S) in [0, 1] and the shape's mask (n, 1, S, S).
    """

    name = "procedural"

    def draw(self, n: int, channels: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        S = TEXTURE
        c = (torch.arange(S, dtype=torch.float32) + 0.5) / S * 2 - 1
        v, u = torch.meshgrid(c, c, indexing="ij")
        contents, masks = [], []
        for _ in range(n):
            shape, texture = (int(i) for i in torch.randint(0, 4, (2,), generator=gen))
            theta, phase, freq = (torch.rand(3, generator=gen) * torch.tensor([math.pi, 2 * math.pi, 5.0])).tolist()
            freq += 1.0
            levels = torch.rand(2, channels, generator=gen)
            blobs = torch.rand(1, 1, 4, 4, generator=gen)
            along = u * math.cos(theta) + v * math.sin(theta)
            if texture == 0:
                t = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * along + phase)
            elif texture == 1:
                t = (torch.sign(torch.sin(math.pi * freq * u + phase) * torch.sin(math.pi * freq * v)) + 1) / 2
            elif texture == 2:
                t = (along + 1) / 2
            else:
                t = Fn.interpolate(blobs, size=(S, S), mode="bilinear", align_corners=False)[0, 0]
            t = t.clamp(0, 1)
            contents.append(levels[0][:, None, None] + (levels[1] - levels[0])[:, None, None] * t)
            edge = 1.5 / (S / 2)          # a 1.5 px soft edge, so the shape itself has no hard border
            if shape == 0:
                mask = torch.ones(S, S)
            elif shape == 1:
                mask = ((1 - torch.sqrt(u ** 2 + v ** 2)) / edge).clamp(0, 1)
            elif shape == 2:
                mask = ((1 - (u.abs() + v.abs())) / edge).clamp(0, 1)
            else:
                mask = ((1 - torch.maximum(u.abs(), v.abs() * 1.6)) / edge).clamp(0, 1)   # a bar
            masks.append(mask[None])
        return torch.stack(contents), torch.stack(masks)


class ImageFolder:
    """The images of a folder (recursively, sorted by path), drawn uniformly; the whole image is
    the object (its mask is all ones), greyscale for 1-channel footage."""

    name = "folder"

    def __init__(self, folder: str | Path):
        import cv2

        self._cv2 = cv2
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError(f"pseudo.patch_source: {self.folder} is not a folder of images")
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ConfigError(f"pseudo.patch_source: no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        self._read(self.files[0], 1)    # an unreadable folder fails before training, not at a pseudo batch

    def _read(self, path: Path, channels: int) -> torch.Tensor:
        img = self._cv2.imread(str(path), self._cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{path}: not a readable image (pseudo.patch_source)")
        if channels == 1:
            img = self._cv2.cvtColor(img, self._cv2.COLOR_BGR2GRAY)[:, :, None]
        else:
            img = self._cv2.cvtColor(img, self._cv2.COLOR_BGR2RGB)
        return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0

    def draw(self, n: int, channels: int, gen: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        picks = torch.randint(len(self.files), (n,), generator=gen).tolist()
        contents = [self._read(self.files[i], channels) for i in picks]
        return contents, [torch.ones(1, *c.shape[1:]) for c in contents]


def build_source(patch_source: str | None) -> ProceduralShapes | ImageFolder:
    return ImageFolder(patch_source) if patch_source else ProceduralShapes()


# --- pasting -------------------------------------------------------------------------------

def paste(x: torch.Tensor, content, mask, size: torch.Tensor, centre: torch.Tensor,
          value_range: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste object i of `content` / `mask` (each (C, h, w) / (1, h, w) in [0, 1]) into clip i of
    `x` (B, C, L, H, W) along its path: (x_p, alpha (B, 1, L, H, W)). x_p = x where alpha = 0."""
    B, C, L, H, W = x.shape
    lo, hi = RANGES[value_range]
    grid = object_grid(size, centre, (H, W)).to(x.device)
    box = footprint(size, centre, (H, W)).to(x.device)
    objs, alphas = [], []
    for b in range(B):
        pair = torch.cat([content[b], mask[b]]).to(x.device, torch.float32)[None].expand(L, -1, -1, -1)
        sampled = Fn.grid_sample(pair, grid[b], mode="bilinear", padding_mode="border", align_corners=False)
        objs.append(sampled[:, :C].transpose(0, 1))                 # (C, L, H, W)
        alphas.append((sampled[:, C:].transpose(0, 1) * box[b][None]).clamp(0, 1))
    obj = lo + (hi - lo) * torch.stack(objs)
    alpha = torch.stack(alphas)
    # lerp is exact where alpha = 0: the clip outside the footprint is untouched
    return torch.lerp(x.float(), obj, alpha).to(x.dtype), alpha


class PatchMaker:
    """The noise-maker interface of `pseudovad.pseudo.noise` (`make(x, gen) -> (x_p, delta)`), so
    LTGPA's pseudo step runs patches like noise: the target stays the clean clip."""

    learnable = False

    def __init__(self, value_range: str, max_size: float, max_move: int, source: str | None = None):
        self.value_range = value_range
        self.max_size = max_size
        self.max_move = max_move
        self.source = build_source(source)

    def paste_batch(self, x: torch.Tensor, gen: torch.Generator):
        """(x_p, alpha, size, centre): the pseudo clips and where their patches are."""
        B, C, L, H, W = x.shape
        size, centre = draw_motion(B, L, (H, W), self.max_size, self.max_move, gen)
        content, mask = self.source.draw(B, C, gen)
        with torch.autocast(x.device.type, enabled=False):   # the blend stays fp32, exact outside
            x_p, alpha = paste(x, content, mask, size, centre, self.value_range)
        return x_p, alpha, size, centre

    def make(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x_p, _, _, _ = self.paste_batch(x, gen)
        return x_p, x_p - x
