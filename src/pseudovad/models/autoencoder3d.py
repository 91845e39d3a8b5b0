"""LTGPA's video models (paper Tables 3 and 4).

F: Conv3d encoder, widths 96/128/256/256, kernel 3, strides (1,2,2) then (2,2,2)×3, each followed
by BatchNorm3d + LeakyReLU(0.2); a mirrored ConvTranspose3d decoder ending in a 1-channel
ConvTranspose3d + Tanh, so a 16×256×256 clip in [-1, 1] comes back at the same shape.
G: the same pattern one level shallower (96/128/256) whose last layer is 2·tanh, so the noise
ΔX it outputs lies in [-2, 2] and can move any pixel of a [-1, 1] clip anywhere in range.
Widths are configurable (`model.ltgpa.width`, `g_width`) so a CPU profile can train in minutes.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as Fn


def _strides(n: int) -> list[tuple[int, int, int]]:
    return [(1, 2, 2)] + [(2, 2, 2)] * (n - 1)


def _encoder(in_ch: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_ch
    for w, s in zip(widths, _strides(len(widths))):
        layers += [nn.Conv3d(c, w, 3, stride=s, padding=1, bias=False), nn.BatchNorm3d(w), nn.LeakyReLU(0.2, inplace=True)]
        c = w
    return nn.Sequential(*layers)


def _decoder(out_ch: int, widths: list[int]) -> nn.Sequential:
    """Mirror of the encoder: each ConvTranspose3d undoes one stride (output_padding = stride − 1)."""
    rev = list(reversed(widths))
    strides = list(reversed(_strides(len(widths))))
    layers: list[nn.Module] = []
    for i, s in enumerate(strides):
        c_in = rev[i]
        last = i == len(strides) - 1
        c_out = out_ch if last else rev[i + 1]
        op = tuple(x - 1 for x in s)
        layers.append(nn.ConvTranspose3d(c_in, c_out, 3, stride=s, padding=1, output_padding=op, bias=last))
        if not last:
            layers += [nn.BatchNorm3d(c_out), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


class VideoAutoencoder(nn.Module):
    """F: reconstructs a clip (B, C, T, H, W) in [-1, 1].

    `reconstruct="motion"` (an output parametrisation, not the paper's): F codes the clip minus
    its per-pixel temporal mean and that mean is added back to the decoder's output, so the
    static scene (its texture included) never passes the bottleneck and the reconstruction error
    is spent on what moves. The output is then linear (clamped to [-1, 1]) instead of tanh.
    """

    value_range = "tanh"

    def __init__(self, channels: int = 1, width: list[int] | None = None, reconstruct: str = "clip"):
        super().__init__()
        width = list(width or [96, 128, 256, 256])
        self.reconstruct = reconstruct
        self.encoder = _encoder(channels, width)
        self.decoder = _decoder(channels, width)
        self.out_act = nn.Tanh() if reconstruct == "clip" else nn.Hardtanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reconstruct == "motion":
            mean = x.mean(2, keepdim=True)
            return self.out_act(mean + self.decoder(self.encoder(x - mean)))
        return self.out_act(self.decoder(self.encoder(x)))

    def reconstruct_frame(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Frame `t` of `forward(x)`, (B, C, H, W), computing only what that frame depends on.

        Scoring reads one frame of the reconstruction (the 9th of 16), but the decoder's last two
        layers, at full resolution, are most of a forward pass (benchmarks/infer_speed.py).
        The encoder runs in full (its bottleneck sees every frame); each transposed convolution
        runs on the few input frames its wanted output frames draw on, without temporal padding,
        and its output is cropped to them. Every other decoder layer must act frame by frame
        (BatchNorm in eval mode, activations), so in training mode, or for a layer this does not
        know, it falls back to the full forward. Same values as `forward(x)[:, :, t]` up to
        float rounding (tests/test_inference.py).
        """
        if self.training or self.reconstruct != "clip" or not all(_framewise(m) for m in self.decoder):
            return self.forward(x)[:, :, t]
        return self._decode_frame(self.encoder(x), t)

    def reconstruct_frame_of_clips(self, window: torch.Tensor, clip_len: int, t: int) -> torch.Tensor:
        """`reconstruct_frame(clip, t)` for every clip of `clip_len` consecutive frames of `window`
        (1, C, N, H, W): (N − clip_len + 1, C, H, W), clip k being frames k … k + clip_len − 1.

        Consecutive clips share all but one frame, and the first encoder layer has temporal stride
        1 (a 3-frame kernel, padding 1): away from a clip's two ends, its output at a frame does
        not depend on which clip the frame is in. So it runs once over the window (without
        temporal padding), and each clip's end frames — where the clip's zero padding enters —
        are two 2-tap convolutions over all clips at once. That layer, at half resolution, was
        about 40% of a scored frame's CPU time at the CPU profile; shared, B clips of L frames
        cost it B + L − 3 + 2B frames instead of B·L (benchmarks/infer_speed.py `+noshare`). The rest runs per clip as in `reconstruct_frame`; where the
        first layer is not of that kind (or in training mode) the clips are simply stacked.
        """
        n = window.shape[2] - clip_len + 1
        if n < 1 or window.shape[0] != 1:
            raise ValueError(f"a (1, C, N ≥ {clip_len}, H, W) window, got {tuple(window.shape)}")
        conv, rest = self.encoder[0], list(self.encoder[1:])
        pointwise = [m for m in rest[:2]]
        shareable = (not self.training and self.reconstruct == "clip" and isinstance(conv, nn.Conv3d) and conv.kernel_size[0] == 3
                     and conv.stride[0] == 1 and conv.padding[0] == 1 and conv.dilation[0] == 1
                     and conv.groups == 1 and clip_len >= 3 and all(_framewise(m) for m in pointwise)
                     and all(_framewise(m) for m in self.decoder))
        if not shareable:
            clips = window[0].unfold(1, clip_len, 1).permute(1, 0, 4, 2, 3)
            return self.reconstruct_frame(clips.contiguous(), t)
        w, b, stride, pad = conv.weight, conv.bias, conv.stride, (0, *conv.padding[1:])
        inner = Fn.conv3d(window, w, b, stride, pad)                     # centred on window frames 1 … N−2
        first = Fn.conv3d(window[:, :, :n + 1], w[:, :, 1:], b, stride, pad)        # clip k's frame 0
        last = Fn.conv3d(window[:, :, clip_len - 2:], w[:, :, :2], b, stride, pad)  # clip k's last frame
        for m in pointwise:
            inner, first, last = m(inner), m(first), m(last)
        _, ch, _, hh, ww = inner.shape
        h = torch.empty((n, ch, clip_len, hh, ww), dtype=inner.dtype, device=inner.device,
                        memory_format=torch.channels_last_3d if inner.is_contiguous(memory_format=torch.channels_last_3d)
                        else torch.contiguous_format)
        h[:, :, 0] = first[0].transpose(0, 1)
        h[:, :, 1:clip_len - 1] = inner[0].unfold(1, clip_len - 2, 1).permute(1, 0, 4, 2, 3)
        h[:, :, clip_len - 1] = last[0].transpose(0, 1)
        for m in rest[2:]:
            h = m(h)
        return self._decode_frame(h, t)

    def _decode_frame(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """Frame `t` of the decoder's output for the encoding `h` (see `reconstruct_frame`)."""
        layers = list(self.decoder)
        convs = [i for i, m in enumerate(layers) if isinstance(m, nn.ConvTranspose3d)]
        lengths = [h.shape[2]]                          # temporal length into each conv
        for i in convs:
            lengths.append(_out_len(layers[i], lengths[-1]))
        if not 0 <= t < lengths[-1]:
            raise IndexError(f"frame {t} of a {lengths[-1]}-frame reconstruction")
        # wanted output frames [a, b] of each conv, from the last back to the first
        wanted: list[tuple[int, int]] = [(t, t)]
        for k in reversed(range(len(convs))):
            wanted.append(_inputs_for(layers[convs[k]], *wanted[-1], lengths[k]))
        wanted.reverse()                                # wanted[k]: input frames of conv k
        lo = 0                                          # h holds frames [lo, lo + h.shape[2])
        for i, m in enumerate(layers):
            if isinstance(m, nn.ConvTranspose3d):
                k = convs.index(i)
                (ia, ib), (oa, ob) = wanted[k], wanted[k + 1]
                h = _transposed_window(m, h[:, :, ia - lo:ib - lo + 1], ia, oa, ob)
                lo = oa
            else:
                h = m(h)
        return self.out_act(h[:, :, t - lo])


def _framewise(m: nn.Module) -> bool:
    """A decoder layer a window of frames can pass: one that acts on each frame alone (BatchNorm in
    eval mode, activations), or a transposed convolution `_transposed_window` can cut."""
    if isinstance(m, nn.ConvTranspose3d):
        return m.dilation[0] == 1 and m.output_padding[0] <= m.padding[0]
    return isinstance(m, (nn.BatchNorm3d, nn.LeakyReLU, nn.Identity))


def _out_len(m: nn.ConvTranspose3d, n: int) -> int:
    s, p, k, op = m.stride[0], m.padding[0], m.kernel_size[0], m.output_padding[0]
    return (n - 1) * s - 2 * p + (k - 1) * m.dilation[0] + op + 1


def _inputs_for(m: nn.ConvTranspose3d, a: int, b: int, n_in: int) -> tuple[int, int]:
    """Input frames [ia, ib] whose taps reach output frames [a, b]: output o takes input i
    through tap j where o = i·stride − padding + j, 0 ≤ j < kernel."""
    s, p, k = m.stride[0], m.padding[0], m.kernel_size[0]
    return max(0, math.ceil((a + p - (k - 1)) / s)), min(n_in - 1, (b + p) // s)


def _transposed_window(m: nn.ConvTranspose3d, h: torch.Tensor, ia: int, oa: int, ob: int) -> torch.Tensor:
    """Output frames [oa, ob] of `m` from its input frames starting at `ia` (all it needs): the
    convolution without temporal padding, whose output frame j is full output frame
    ia·stride + j − padding."""
    s, p = m.stride[0], m.padding[0]
    y = Fn.conv_transpose3d(h, m.weight, m.bias, m.stride, (0, *m.padding[1:]), (0, *m.output_padding[1:]),
                            m.groups, m.dilation)
    j = oa - ia * s + p
    return y[:, :, j:j + ob - oa + 1]


class VideoNoiseGenerator(nn.Module):
    """G: maps a normal clip to noise ΔX ∈ [-2, 2] of the same shape."""

    def __init__(self, channels: int = 1, width: list[int] | None = None):
        super().__init__()
        width = list(width or [96, 128, 256])
        self.encoder = _encoder(channels, width)
        self.decoder = _decoder(channels, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.tanh(self.decoder(self.encoder(x)))
