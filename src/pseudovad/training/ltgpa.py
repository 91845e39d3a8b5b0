"""LTGPA's update rule: F learns to reconstruct the clean clip from normal and pseudo input; G
learns the largest noise F still reconstructs. The comparison rows run through the same rule.

Per sample, with probability p (`pseudo.p`) the sample is a pseudo anomaly (drawn per sample, as
LNTRA's and STEAL's released code do: a batch mixes normal and pseudo clips, so BatchNorm
normalises the pseudo clips with the normal ones' statistics and F's running statistics see both):
  F step  min mean_b loss_b,  loss_b = mean‖F(X)_b − X^N_b‖²   (normal: X_b = X^N_b;
          pseudo: X_b = X^P_b, the clean clip is still the target)
  G step  min mean‖F(X^P) − X^P‖² − λ·mean‖ΔX‖²   (learned noise only, over the batch's pseudo
          samples, before F's step, on the same X^P = clip(X^N + G(X^N)): G adapts to F's
          boundary as it is, then F learns this X^P (the paper's Fig. 4). F sees the same mixed
          batch it then trains on; gradients flow through F into G, only G's optimiser steps, and
          F's BatchNorm statistics are restored afterwards, so F is bit-identical after a G step)
Norms are means over all elements, as in the paper's MSE losses; every sample weighs the same.
Optimisers: Adam for F and G (paper). The paper's lr is constant; `train.lr_schedule: cosine`
and/or `train.warmup_epochs` put both optimisers on a per-step warm-up + cosine schedule
(`pseudovad.training.schedule`), for short CPU runs; with neither, no schedule object exists and
training is exactly the paper's.

X^P by `pseudo.kind`: clip(X^N + ΔX) for `gaussian` / `learned`; LNTRA's skip-frame clip for
`skip` (`pseudovad.pseudo.skip`, target: the stride-1 clip from the same first frame); LNTRA's
moving patch for `patch` (`pseudovad.pseudo.patch`, target: the clean clip). Only the pseudo
samples' X^P are made (noise, patches, skip clips, G's forward pass).

`train.pseudo_loss: maximize` replaces a pseudo sample's loss by STEAL's (Astrid et al. 2021,
"Synthetic temporal anomaly guided end-to-end video anomaly detection"):
  loss_b = −mean‖F(X^P)_b − X^P_b‖²   (F is pushed to reconstruct the pseudo input badly)
as the released STEAL code does (the per-clip MSE to the pseudo input itself, negated). The loss
is bounded because the reconstruction is: F ends in tanh (image variant: sigmoid), so with X^P
in the same range every squared error is at most (hi − lo)² (4 for [-1, 1]) and the pseudo loss
lies in [−4, 0]; nothing else is clipped (STEAL's code clips nothing either). `max_error` is that
bound; the logged `pseudo_error` is the mean squared error being maximised.

Logged per step: `loss_f_normal` / `loss_f_pseudo`, the mean loss of the batch's normal / pseudo
samples (only those the batch has), `n_pseudo` (pseudo samples trained; the epoch record sums it),
and per kind the noise norms, G's losses or the skip-frame counts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as Fn

from pseudovad.config import Config, lr_schedule
from pseudovad.models import build_model, value_range
from pseudovad.pseudo.noise import RANGES, NoiseMaker, build_noise
from pseudovad.pseudo.patch import PatchMaker
from pseudovad.pseudo.skip import SkipFrames, window_len
from pseudovad.training.method import Method
from pseudovad.training.schedule import WarmupCosine


def max_error(value_range: str) -> float:
    """The largest mean squared error between two clips in `value_range`: (hi − lo)²."""
    lo, hi = RANGES[value_range]
    return (hi - lo) ** 2



def build_generator(cfg: Config) -> torch.nn.Module:
    """G, the noise generator (of the video or the image variant)."""
    lt = cfg.model.ltgpa
    if lt.variant == "image":
        from pseudovad.models.autoencoder2d import ImageNoiseGenerator

        return ImageNoiseGenerator(cfg.data.channels, lt.g_width)
    from pseudovad.models.autoencoder3d import VideoNoiseGenerator

    return VideoNoiseGenerator(cfg.data.channels, lt.g_width)

class LTGPAMethod(Method):
    name = "ltgpa"

    def __init__(self, cfg: Config, device: torch.device):
        super().__init__(cfg, device)
        self.value_range = value_range(cfg)
        self.F = build_model(cfg).to(device)
        self.kind = cfg.pseudo.kind
        self.p = cfg.pseudo.p if self.kind != "none" else 0.0
        self.lam = cfg.pseudo.lam
        self.G = build_generator(cfg).to(device) if self.kind == "learned" else None
        self.maximize = cfg.train.pseudo_loss == "maximize"
        ps = cfg.pseudo
        # skip frames need the window beyond the clip (`skip_step`); every other kind makes X^P from X^N
        self.skip = SkipFrames(cfg.data.clip_len, ps.jumps) if self.kind == "skip" else None
        self.noise: NoiseMaker | PatchMaker | None = None
        if self.kind == "patch":
            self.noise = PatchMaker(self.value_range, ps.patch_max_size, ps.patch_max_move, ps.patch_source)
        elif self.kind != "skip":
            self.noise = build_noise(self.kind, self.value_range, ps.sigma, self.G)
        # fused: one kernel per parameter instead of a dozen elementwise ops (the same Adam update;
        # on a 2-core CPU the small ops' thread synchronisation cost a few % of a bf16 step)
        self.opt_f = torch.optim.Adam(self.F.parameters(), lr=cfg.train.lr, fused=True)
        self.opt_g = (torch.optim.Adam(self.G.parameters(), lr=cfg.train.g_lr or cfg.train.lr, fused=True)
                      if self.G is not None else None)
        t = cfg.train
        shape = lr_schedule(cfg)
        self.steps_per_epoch: int | None = None   # set by training.loop.fit
        self.scheds: dict[str, WarmupCosine] = {}
        if shape != "constant" or t.warmup_epochs > 0:
            for k, opt in self.optimizers().items():
                base = opt.param_groups[0]["lr"]
                self.scheds[k] = WarmupCosine(opt, base, t.warmup_epochs, t.epochs, t.max_steps, shape)
                self.scheds[k].apply(None)
        # whether steps draw pseudo samples at all (p = 0 or kind none: never, and nothing is drawn)
        self.draws = (self.noise is not None or self.skip is not None) and self.p > 0
        self.F_run = torch.compile(self.F) if cfg.train.compile else self.F
        self.G_run = torch.compile(self.G) if (cfg.train.compile and self.G is not None) else self.G
        if self.noise is not None and self.G_run is not None:
            self.noise.G = self.G_run

    @classmethod
    def lookahead(cls, cfg: Config) -> int:
        """Skip-frame clips need the footage the largest jump reaches; other kinds need none."""
        if cfg.pseudo.kind != "skip":
            return 0
        return window_len(cfg.data.clip_len, cfg.pseudo.jumps) - cfg.data.clip_len

    def modules(self):
        return {"F": self.F, **({"G": self.G} if self.G is not None else {})}

    def optimizers(self):
        return {"F": self.opt_f, **({"G": self.opt_g} if self.opt_g is not None else {})}

    def schedulers(self):
        return dict(self.scheds)

    def predictor(self):
        return self.F

    def draw_pseudo(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """Bool (B,): which samples are pseudo anomalies, Bernoulli(p) each. p = 0 (or kind none)
        draws nothing and never builds a pseudo sample."""
        if not self.draws:
            return torch.zeros(batch, dtype=torch.bool)
        return torch.rand(batch, generator=gen) < self.p

    def f_step(self, x: torch.Tensor, x_in: torch.Tensor, pseudo: torch.Tensor) -> dict[str, float]:
        """F's update on input `x_in` whose samples `pseudo` (bool (B,)) are pseudo anomalies;
        returns the logged losses. Per sample: the MSE to the clean clip `x`, or with `maximize`
        for a pseudo sample minus the MSE to its own input; the batch's loss is their mean."""
        out = self.F_run(x_in).float()
        rows = pseudo.to(x.device).view(-1, *([1] * (x.dim() - 1)))
        negate = self.maximize and bool(pseudo.any())
        target = torch.where(rows, x_in, x).float() if negate else x.float()
        if negate:
            per = (out - target).pow(2).flatten(1).mean(1)
            loss = torch.where(rows.flatten(), -per, per).mean()
        else:   # the mean of equal-sized per-sample means: the plain MSE of the batch
            loss = Fn.mse_loss(out, target)
        self.opt_f.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_f.step()
        with torch.no_grad():
            per = (out.detach() - target).pow(2).flatten(1).mean(1).cpu()
        rec = {}
        if not bool(pseudo.all()):
            rec["loss_f_normal"] = float(per[~pseudo].mean())
        if bool(pseudo.any()):
            err = float(per[pseudo].mean())
            rec.update(self.pseudo_record(-err if self.maximize else err))
        return rec

    def pseudo_record(self, loss: float) -> dict[str, float]:
        rec = {"loss_f_pseudo": loss}
        if self.maximize:
            rec["pseudo_error"] = -loss
        return rec

    def g_step(self, x_p: torch.Tensor, delta: torch.Tensor, clip: torch.Tensor | None = None,
               rows: torch.Tensor | None = None) -> tuple[float, float]:
        """G's update on the pseudo clips `x_p` G made (with its graph) of the samples `rows` of
        `clip` (None: the batch is `x_p` alone); F sees the batch with those samples replaced and
        is frozen (parameters and BN statistics)."""
        buffers = {k: b.clone() for k, b in self.F.named_buffers()}
        requires = [p.requires_grad for p in self.F.parameters()]
        for p in self.F.parameters():
            p.requires_grad_(False)
        try:
            if clip is None:
                rec_loss = Fn.mse_loss(self.F_run(x_p).float(), x_p.float())
            else:
                batch = clip.detach().clone()
                batch[rows] = x_p                 # G's graph flows through the pseudo samples only
                rec_loss = Fn.mse_loss(self.F_run(batch).float()[rows], x_p.float())
            loss = rec_loss - self.lam * delta.float().pow(2).mean()
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            for p, r in zip(self.F.parameters(), requires):
                p.requires_grad_(r)
            with torch.no_grad():
                for k, b in self.F.named_buffers():
                    b.copy_(buffers[k])
        return float(loss.detach()), float(rec_loss.detach())

    def train_step(self, clip: torch.Tensor, gen: torch.Generator, reach: torch.Tensor | None = None
                   ) -> dict[str, float]:
        # every loop step advances both schedules (G's too, on normal batches: one clock)
        for s in self.scheds.values():
            s.apply(self.steps_per_epoch)
            s.step_count += 1
        return self._step(clip, gen, reach)

    def end_epoch(self, epoch: int) -> None:
        for s in self.scheds.values():
            s.epoch = epoch + 1

    def _step(self, clip: torch.Tensor, gen: torch.Generator, reach: torch.Tensor | None = None
              ) -> dict[str, float]:
        window = clip
        if self.skip is not None:
            if reach is None:
                raise ValueError("skip-frame pseudo anomalies need windows with their reach "
                                 "(a dataset built with the method's lookahead)")
            clip = self.skip.normal(window)
        pseudo = self.draw_pseudo(clip.shape[0], gen)
        if not bool(pseudo.any()):
            return {**self.f_step(clip, clip, pseudo), **({"n_pseudo": 0.0} if self.draws else {})}
        if self.skip is not None:
            return self.skip_step(window, clip, reach, pseudo, gen)
        rows = pseudo.nonzero().flatten().to(clip.device)
        learned = self.G is not None
        with torch.set_grad_enabled(learned):  # G's graph is kept for its own step
            x_p, delta = self.noise.make(clip[rows], gen)
        rec = {"n_pseudo": float(rows.numel()), "noise_norm": float(delta.detach().float().pow(2).mean()),
               "noise_abs": float(delta.detach().float().abs().mean())}
        if learned:   # G first, against F as it is; then F learns the same X^P (module doc)
            rec["loss_g"], rec["loss_g_rec"] = self.g_step(x_p, delta, clip, rows)
        x_in = clip.clone()
        x_in[rows] = x_p.detach()
        return {**self.f_step(clip, x_in, pseudo), **rec}

    def skip_step(self, window: torch.Tensor, clip: torch.Tensor, reach: torch.Tensor, pseudo: torch.Tensor,
                  gen: torch.Generator) -> dict[str, float]:
        """A batch whose samples `pseudo` were drawn as skip-frame clips (`clip`: the windows'
        stride-1 clips, the target of every sample).

        A drawn sample whose jump does not fit its footage is trained as the normal clip it is,
        and counted (`n_skip_dropped`), so no sample and no step is lost at the end of short videos."""
        rows = pseudo.nonzero().flatten()
        x_s, _, kept, jumps = self.skip.make(window[rows.to(window.device)], reach[rows.to(reach.device)], gen)
        used = rows[kept]
        trained = torch.zeros_like(pseudo)
        trained[used] = True
        rec = {"n_skip_dropped": float((~kept).sum()), "n_pseudo": float(used.numel())}
        x_in = clip
        if used.numel():
            x_in = clip.clone()
            x_in[used.to(clip.device)] = x_s
            rec["skip_jump"] = float(jumps[kept].float().mean())
        return {**self.f_step(clip, x_in, trained), **rec}
