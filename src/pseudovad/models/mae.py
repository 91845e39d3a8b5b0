"""MAE-NCT's predictor: a ViT encoder over stacked past frames and a one-layer linear decoder
that writes the pixels of the next frame (Huang et al. 2023, after SimMIM).

The ViT is written in plain torch because timm needs torchvision, which does not work with
this torch build; module and parameter names follow timm's VisionTransformer
(`patch_embed.proj`, `pos_embed`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`,
`norm`) so a timm or SimMIM ViT state_dict loads by name. There is no class token: the task
is dense prediction, every token is decoded into its own patch of the next frame.

Input: frames (B, C, T, H, W) in [-1, 1] with T = `in_frames`, stacked as C·T image channels
(channel-major: c0t0, c0t1, …). A bool mask (B, N) over ViT patches replaces those patch
embeddings by a learned `mask_token` before the position embedding is added, as in SimMIM:
the pseudo anomaly lives in feature space, not in pixels.

Output: the predicted next frame (B, C, H, W). The decoder is linear with no output activation,
as in the paper and SimMIM (the target is regressed directly); scoring compares it to the true
frame with PSNR, so values slightly outside [-1, 1] only cost PSNR, as they should.

Pretrained weights are loaded by the training method (`load_pretrained`), not by
`from_config`: `models.model_file.load_model` rebuilds the model from a saved config and must not
need the pretrained file on the scoring machine.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as Fn
from torch import nn
from torch.utils.checkpoint import checkpoint

from pseudovad.config import Config
from pseudovad.errors import ConfigError

log = logging.getLogger(__name__)


class PatchEmbed(nn.Module):
    """Non-overlapping p×p patches → tokens (timm's PatchEmbed: `proj` is a strided conv)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # torch's CPU attention kernels are slower in bf16 than in fp32 at ViT head sizes
            # (4× at head dim 24, benchmarks/mae_speed.py): under autocast, attend in fp32
            with torch.autocast("cpu", enabled=False):
                x = Fn.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
        else:
            x = Fn.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block, timm layout (LayerNorm eps 1e-6)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MAEPredictor(nn.Module):
    """ViT encoder + linear decoder: T past frames → the next frame."""

    value_range = "tanh"

    def __init__(self, channels: int = 1, in_frames: int = 4, img_size: tuple[int, int] = (224, 224),
                 patch_size: int = 16, embed_dim: int = 768, depth: int = 12, heads: int = 12,
                 mlp_ratio: float = 4.0, predict: str = "frame"):
        super().__init__()
        h, w = img_size
        if h % patch_size or w % patch_size:
            raise ConfigError(f"data.size: {list(img_size)} must be divisible by model.mae.patch_size ({patch_size})")
        self.channels = channels
        self.in_frames = in_frames
        self.img_size = (h, w)
        self.patch_size = patch_size
        self.grid = (h // patch_size, w // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.embed_dim = embed_dim
        self.grad_checkpointing = False
        self.predict = predict

        self.patch_embed = PatchEmbed(channels * in_frames, embed_dim, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.decoder = nn.Linear(embed_dim, patch_size * patch_size * channels)
        self._init_weights()

    @classmethod
    def from_config(cls, cfg: Config) -> "MAEPredictor":
        m = cfg.model.mae
        return cls(channels=cfg.data.channels, in_frames=m.in_frames, img_size=tuple(cfg.data.size),
                   patch_size=m.patch_size, embed_dim=m.embed_dim, depth=m.depth, heads=m.heads,
                   mlp_ratio=m.mlp_ratio, predict=m.predict)

    def _init_weights(self) -> None:
        """timm's ViT init: truncated normal (std .02) for embeddings and linears, zero biases."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay besides norms and biases (timm's / SimMIM's names)."""
        return {"pos_embed", "mask_token"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward: ViT-B/16 at batch 8+ on a small GPU."""
        self.grad_checkpointing = enable

    # ------------------------------------------------------------------------------------------
    def _check_input(self, frames: torch.Tensor) -> None:
        if frames.ndim != 5 or frames.shape[1] != self.channels or frames.shape[2] != self.in_frames \
                or tuple(frames.shape[3:]) != self.img_size:
            raise ValueError(f"MAEPredictor expects frames (B, {self.channels}, {self.in_frames}, "
                             f"{self.img_size[0]}, {self.img_size[1]}), got {tuple(frames.shape)}")

    def tokens(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch embeddings with masked ones replaced by the mask token, plus positions."""
        self._check_input(frames)
        b = frames.shape[0]
        x = self.patch_embed(frames.reshape(b, -1, *self.img_size))
        if mask is not None:
            if mask.shape != (b, self.num_patches):
                raise ValueError(f"mask must be (B, N) = ({b}, {self.num_patches}), got {tuple(mask.shape)}")
            x = torch.where(mask.to(x.device).unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return x + self.pos_embed.to(x.dtype)

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) → frame (B, C, H, W): each token writes its own p×p patch."""
        b = feats.shape[0]
        p, (gh, gw), c = self.patch_size, self.grid, self.channels
        x = self.decoder(feats).reshape(b, gh, gw, p, p, c)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)

    def forward_features(self, frames: torch.Tensor, mask: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token encoder features (B, N, D) after the final norm, predicted frame)."""
        x = self.tokens(frames, mask)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        feats = self.norm(x)
        out = self.decode(feats)
        if self.predict == "change":       # the decoder writes the change from the last input frame
            out = out + frames[:, :, -1].to(out.dtype)
        return feats, out

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(frames, mask)[1]

    # ------------------------------------------------------------------------------------------
    def load_pretrained(self, path: str | Path) -> dict[str, list[str]]:
        """Load a local timm/SimMIM ViT state_dict by name, adapting what can be adapted.

        Accepts a bare state_dict or one under 'model' / 'state_dict'; a SimMIM checkpoint's
        'encoder.' prefix is stripped and its q_bias/v_bias become timm's qkv bias. The patch
        embedding is adapted to C·T input channels and the position embedding is resized to
        this grid (a class-token slot is dropped). Everything else that does not fit is skipped
        and reported. Never downloads anything.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"model.mae.pretrained: {path}: file not found (weights are never downloaded)")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for foreign files
            raise ConfigError(f"model.mae.pretrained: {path}: not a readable torch file "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
        state = _unwrap(blob)
        if state is None:
            raise ConfigError(f"model.mae.pretrained: {path}: no state_dict found (expected tensors, "
                              f"or a dict with 'model' or 'state_dict')")
        state = _from_simmim(state)
        own = self.state_dict()
        loaded: dict[str, torch.Tensor] = {}
        adapted, mismatched, unexpected = [], [], []
        for k, v in state.items():
            if k not in own:
                unexpected.append(k)
                continue
            if k == "patch_embed.proj.weight" and v.shape != own[k].shape:
                v2 = _adapt_patch_embed(v, own[k].shape, self.channels, self.in_frames)
                if v2 is not None:
                    adapted.append(f"{k} {tuple(v.shape)}→{tuple(v2.shape)}")
                    v = v2
            elif k == "pos_embed" and v.shape != own[k].shape:
                v2 = _resize_pos_embed(v, self.grid)
                if v2 is not None:
                    adapted.append(f"{k} {tuple(v.shape)}→{tuple(v2.shape)}")
                    v = v2
            if v.shape != own[k].shape:
                mismatched.append(f"{k} {tuple(v.shape)}≠{tuple(own[k].shape)}")
                continue
            loaded[k] = v.to(own[k].dtype)
        missing = [k for k in own if k not in loaded]
        self.load_state_dict(loaded, strict=False)
        report = {"loaded": sorted(loaded), "adapted": adapted, "missing": missing,
                  "unexpected": unexpected, "mismatched": mismatched}
        log.warning("pretrained %s: loaded %d/%d tensors; adapted %s; missing %s; mismatched %s; unexpected %s",
                    path, len(loaded), len(own), _short(adapted), _short(_group(missing)), _short(mismatched),
                    _short(_group(unexpected)))
        return report


# ----------------------------------------------------------------------------------------------
# Pretrained-weight adaptation

def _group(keys: list[str]) -> list[str]:
    """'blocks.7.attn.qkv.weight', … → 'blocks.7.* (12)': whole surplus blocks read as one item."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        parts = k.split(".")
        head = ".".join(parts[:2]) + ".*" if parts[0] == "blocks" and len(parts) > 2 else k
        groups.setdefault(head, []).append(k)
    return [h if len(ks) == 1 and h == ks[0] else f"{h} ({len(ks)})" for h, ks in groups.items()]


def _short(items: list[str], n: int = 8) -> str:
    if not items:
        return "none"
    more = f", … (+{len(items) - n})" if len(items) > n else ""
    return f"{len(items)} [" + ", ".join(items[:n]) + more + "]"


def _unwrap(blob: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(blob, dict):
        for key in ("model", "state_dict"):
            if isinstance(blob.get(key), dict):
                return _unwrap(blob[key])
        tensors = {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    return None


def _from_simmim(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SimMIM/BEiT naming → timm: drop 'encoder.', fold q_bias/v_bias into qkv.bias (k bias 0)."""
    if state and all(k.startswith("encoder.") for k in state if not k.startswith("decoder.")):
        state = {k[len("encoder."):] if k.startswith("encoder.") else k: v for k, v in state.items()}
    out = dict(state)
    for k in list(state):
        if k.endswith(".attn.q_bias"):
            prefix = k[: -len("q_bias")]
            v_bias = state.get(prefix + "v_bias")
            if v_bias is not None and prefix + "qkv.bias" not in state:
                q_bias = state[k]
                out[prefix + "qkv.bias"] = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
                del out[k], out[prefix + "v_bias"]
    return out


def _adapt_patch_embed(w: torch.Tensor, shape: torch.Size, channels: int, in_frames: int) -> torch.Tensor | None:
    """(D, c_src, p, p) → (D, C·T, p, p), keeping the response to T identical frames unchanged.

    RGB weights for grey input are summed over colour (grey = R = G = B); the per-frame weights
    are repeated over the T frames and divided by T, so a static clip embeds like one image.
    """
    d, c_src = w.shape[:2]
    if d != shape[0] or w.shape[2:] != shape[2:]:
        return None
    if c_src == channels:
        per_frame = w
    elif c_src == 3 and channels == 1:
        per_frame = w.sum(1, keepdim=True)
    elif c_src == channels * in_frames:
        return w
    else:  # anything else: spread the mean weight over the new channels (timm's adapt_input_conv)
        return w.mean(1, keepdim=True).repeat(1, channels * in_frames, 1, 1) * (c_src / (channels * in_frames))
    return per_frame.unsqueeze(2).repeat(1, 1, in_frames, 1, 1).reshape(d, channels * in_frames, *w.shape[2:]) / in_frames


def _resize_pos_embed(pe: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor | None:
    """(1, [1+] h0·w0, D) → (1, gh·gw, D): drop a class-token slot, bicubic-resize a square grid."""
    if pe.ndim != 3:
        return None
    n = pe.shape[1]
    side = math.isqrt(n)
    if side * side != n:
        side = math.isqrt(n - 1)
        if side * side != n - 1:
            return None
        pe = pe[:, 1:]
    d = pe.shape[2]
    if (side, side) == tuple(grid):
        return pe
    img = pe.reshape(1, side, side, d).permute(0, 3, 1, 2).float()
    img = Fn.interpolate(img, size=grid, mode="bicubic", align_corners=False)
    return img.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d).to(pe.dtype)
