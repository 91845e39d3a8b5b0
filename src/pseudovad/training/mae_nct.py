"""MAE-NCT's update rule: future-frame prediction with mask-token pseudo anomalies and
normalcy-consistency training (Huang et al. 2023).

A clip holds T = `model.mae.in_frames` input frames X and the next frame Y. Per batch, by
`pseudo.mode`:
  nct   X^P = X with a fresh random mask per sample; one forward over [X; X^P] gives
        (f^O, Y^O) and (f^P, Y^P);
        loss = λ_N·(L_int+L_gd)(Y^O, Y) + λ_P·(L_int+L_gd)(Y^P, Y) + λ_cst·½(KL(f^O‖f^P) + KL(f^P‖f^O))
        (the target of the pseudo branch is the true next frame: F must see through the mask)
  none  loss = λ_N·(L_int+L_gd)(Y^O, Y); no mask is ever drawn (the "no pseudo anomaly" row)
  prob  with probability `pseudo.p` the whole batch is masked and trained as
        λ_P·(L_int+L_gd)(Y^P, Y), otherwise as the normal term; no KL (the "pseudo anomalies
        instead of NCT" row)
Optimiser: AdamW (0.9, 0.999), `train.lr`, `train.weight_decay` on the weight matrices only: no
weight decay on LayerNorm weights, biases, `pos_embed` and `mask_token` (`param_groups`, the
SimMIM / timm recipe: decaying them pulls the norms' gains and the learned embeddings to 0). Schedule (`train.lr_schedule`,
the paper's `cosine` by default): linear warm-up over `train.warmup_epochs` then cosine decay to
0, stepped per batch (the loop tells the method its steps per epoch); see
`pseudovad.training.schedule`.
"""
from __future__ import annotations

import torch
from torch import nn

from pseudovad.config import Config, lr_schedule
from pseudovad.models.mae import MAEPredictor
from pseudovad.pseudo.mask import random_patch_mask
from pseudovad.training.losses import prediction_loss, symmetric_kl
from pseudovad.training.method import Method
from pseudovad.training.schedule import WarmupCosine  # noqa: F401  (re-exported: its home before schedule.py)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's parameter groups as timm's `param_groups_weight_decay` builds them (SimMIM's
    fine-tuning recipe too): weight decay 0 on 1-D parameters (norm weights, biases) and on the
    names the model's `no_weight_decay()` lists (the ViT's pos_embed, mask_token); `weight_decay`
    on the rest."""
    skip = set(getattr(model, "no_weight_decay", lambda: ())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


class MAENCTMethod(Method):
    name = "mae_nct"

    def __init__(self, cfg: Config, device: torch.device):
        super().__init__(cfg, device)
        m, p, t = cfg.model.mae, cfg.pseudo, cfg.train
        self.F = MAEPredictor.from_config(cfg)
        if m.pretrained:
            self.pretrained_report = self.F.load_pretrained(m.pretrained)
        self.F.to(device)
        self.in_frames = m.in_frames
        self.mode = p.mode
        self.steps_per_epoch: int | None = None   # set by training.loop.fit
        self.opt = torch.optim.AdamW(param_groups(self.F, t.weight_decay), lr=t.lr, betas=(0.9, 0.999),
                                     fused=True)   # one kernel per parameter (see LTGPAMethod)
        self.sched = WarmupCosine(self.opt, t.lr, t.warmup_epochs, t.epochs, t.max_steps, lr_schedule(cfg))
        self.sched.apply(None)
        self._features = torch.compile(self.F.forward_features) if t.compile else self.F.forward_features

    def modules(self):
        return {"F": self.F}

    def optimizers(self):
        return {"F": self.opt}

    def schedulers(self):
        return {"F": self.sched}

    def predictor(self):
        return self.F

    def draw_mask(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        p = self.cfg.pseudo
        mask = random_patch_mask(batch, self.cfg.data.size, self.F.patch_size, p.mask_patch, p.mask_ratio, gen)
        return mask.to(self.device)

    def losses(self, clip: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted loss of one batch and the scalars to log (no parameter update)."""
        p = self.cfg.pseudo
        x, y = clip[:, :, :self.in_frames], clip[:, :, self.in_frames]
        b = x.shape[0]
        if self.mode == "nct":
            mask = self.draw_mask(b, gen)
            none = torch.zeros_like(mask)
            feats, pred = self._features(torch.cat([x, x]), torch.cat([none, mask]))
            f_o, f_p = feats.chunk(2)
            y_o, y_p = pred.chunk(2)
            l_n, l_p, l_c = prediction_loss(y_o, y), prediction_loss(y_p, y), symmetric_kl(f_o, f_p)
            loss = p.lambda_n * l_n + p.lambda_p * l_p + p.lambda_cst * l_c
            rec = {"loss_f_normal": l_n, "loss_f_pseudo": l_p, "loss_cst": l_c, "mask_ratio_actual": mask.float().mean()}
        elif self.mode == "prob" and bool(torch.rand((), generator=gen) < p.p):
            mask = self.draw_mask(b, gen)
            l_p = prediction_loss(self._features(x, mask)[1], y)
            loss = p.lambda_p * l_p
            rec = {"loss_f_pseudo": l_p, "mask_ratio_actual": mask.float().mean()}
        else:
            l_n = prediction_loss(self._features(x, None)[1], y)
            loss = p.lambda_n * l_n
            rec = {"loss_f_normal": l_n, "mask_ratio_actual": torch.zeros(())}
        rec["loss"] = loss
        return loss, rec

    def train_step(self, clip: torch.Tensor, gen: torch.Generator) -> dict[str, float]:
        """One AdamW step. Logs `loss` (the weighted total), `loss_f_normal` / `loss_f_pseudo`
        ((L_int+L_gd) of the normal / masked branch: the history keys LTGPA uses for F's losses),
        `loss_cst` (the symmetric KL, unweighted) and `mask_ratio_actual` (share of ViT patches
        masked). Only the terms this batch computed are logged (a `prob` batch is either normal or
        pseudo), so the loop's per-epoch means are means over the batches that had them."""
        self.sched.apply(self.steps_per_epoch)
        loss, rec = self.losses(clip, gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step_count += 1
        return {k: float(v.detach()) for k, v in rec.items()}

    def end_epoch(self, epoch: int) -> None:
        self.sched.epoch = epoch + 1
