"""What the compute device can do, and the choices that follow from it.

`--device auto|cpu|cuda` → torch.device; whether the device runs bf16 fast (`train.amp: auto`);
which memory format a model kind trains fastest in (`train.memory_format: auto`); CPU threads.
Every "auto" here is resolved once, at the start of a run, and recorded with the run, so a
result can always be traced to the precision and layout it was trained in.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from pseudovad.errors import ConfigError

log = logging.getLogger(__name__)

# CPU flags (as /proc/cpuinfo spells them) that give bf16 matrix units: AMX tiles (Sapphire
# Rapids and later) or AVX-512 BF16 dot products (Cooper Lake, Zen 4). Without either, bf16
# autocast on a CPU is emulated and slower than fp32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


# ----------------------------------------------------------------------------------------------
# bf16

def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The first processor's flags from /proc/cpuinfo (Linux); None where there is no such file."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def _torch_cpu_bf16() -> list[str]:
    """Fallback where /proc/cpuinfo is missing (macOS, Windows): torch's own CPUID probes
    (private helpers of torch.cpu, present in torch ≥ 2.3; absent ones count as no)."""
    probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    found = []
    for flag, fn in probes.items():
        probe = getattr(torch.cpu, fn, None)
        try:
            if probe is not None and probe():
                found.append(flag)
        except Exception:  # a probe that fails on this platform says nothing
            pass
    return found


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """(does `device` run bf16 natively, why we think so): one line for logs and run records."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'supports' if ok else 'does not support'} bf16 (torch.cuda.is_bf16_supported)"
    if device.type != "cpu":
        return False, f"{device.type}: bf16 support unknown"
    flags = cpu_flags()
    if flags is not None:
        have = [f for f in BF16_CPU_FLAGS if f in flags]
        source = "/proc/cpuinfo"
    else:
        have = _torch_cpu_bf16()
        source = "torch.cpu CPUID probes"
    if have:
        return True, f"CPU reports {', '.join(have)} ({source})"
    return False, f"CPU reports neither {' nor '.join(BF16_CPU_FLAGS)} ({source})"


@dataclass(frozen=True)
class Precision:
    """The resolved `train.amp`: autocast dtype (None: fp32) and the reason, for the run record."""

    setting: str          # auto | bf16 | off, as configured
    dtype: torch.dtype | None
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.dtype is torch.bfloat16 else "fp32"

    def autocast(self, device: torch.device) -> torch.autocast:
        """Autocast for the forward passes; disabled (a no-op) in fp32. Losses are computed in
        fp32 inside it by the methods (`.float()` before every reduction)."""
        return torch.autocast(device_type=device.type, dtype=self.dtype or torch.bfloat16,
                              enabled=self.dtype is not None)


def resolve_amp(setting: str, device: torch.device, key: str = "train.amp") -> Precision:
    """`train.amp` (or `key`, e.g. inference.amp): auto → bf16 where the device supports it, fp32
    elsewhere; bf16 / off as asked."""
    if setting == "off":
        return Precision(setting, None, f"{key}: off")
    ok, why = bf16_support(device)
    if setting == "bf16":
        return Precision(setting, torch.bfloat16, f"{key}: bf16" + ("" if ok else f" (slow here: {why})"))
    return Precision(setting, torch.bfloat16 if ok else None, f"auto: {why}")


# ----------------------------------------------------------------------------------------------
# Memory format

# Measured by benchmarks/ltgpa_speed.py and benchmarks/mae_speed.py (docs/guides/training.md "Training speed",
# benchmarks/RESULTS.md): the layout a training step is fastest in, per model kind and device
# type. Model kinds: "video" (LTGPA's 3D conv autoencoders), "image" (LTGPA's 2D image
# variant), "vit" (MAE-NCT: its only conv is the patch embedding, the rest is token matmuls).
# On CPU channels-last won for all three, in fp32 and bf16 (video 1.3–1.5× in fp32, up to 2.5×
# in bf16 at paper size; image 1.27×; the ViT a few % at its CPU profile, even at ViT-B/16).
# CUDA is unmeasured (no GPU was available): channels-last is what cuDNN's tensor-core
# convolutions prefer (PyTorch's channels-last tutorial), and the ViT keeps torch's default.
FASTEST_FORMAT = {
    ("video", "cpu"): "channels_last",
    ("image", "cpu"): "channels_last",
    ("vit", "cpu"): "channels_last",
    ("video", "cuda"): "channels_last",
    ("image", "cuda"): "channels_last",
    ("vit", "cuda"): "contiguous",
}


def resolve_memory_format(setting: str, kind: str, device: torch.device) -> str:
    """`train.memory_format`: auto → FASTEST_FORMAT for this model kind and device; else as asked."""
    if setting != "auto":
        return setting
    return FASTEST_FORMAT.get((kind, device.type), "contiguous")


def torch_format(name: str, ndim: int) -> torch.memory_format:
    """"channels_last" → channels_last_3d for 5-D (video) tensors, channels_last for 4-D ones."""
    if name != "channels_last" or ndim not in (4, 5):
        return torch.contiguous_format
    return torch.channels_last_3d if ndim == 5 else torch.channels_last


# ----------------------------------------------------------------------------------------------
# Threads

def set_threads(n: int) -> None:
    """`--threads N`: torch's intra-op threads (and inter-op, if still settable) and OMP_NUM_THREADS
    for child processes. Without it torch follows OMP_NUM_THREADS, or uses every core."""
    if n < 1:
        raise ConfigError(f"--threads: must be ≥ 1, got {n}")
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable before the first inter-op parallel work; harmless after
        log.debug("inter-op threads already fixed at %d", torch.get_num_interop_threads())
