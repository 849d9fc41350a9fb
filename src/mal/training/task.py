"""The LightningModule: a model, its losses (L_df, optional Model-as-Loss and external-network terms),
the optimiser and the Model-as-Loss snapshot schedule.

Fine-tuning variants (``finetune.variant``) decide what trains and which extra losses run:

=====================  ===========  ===============  =========================
variant                L_mal        external loss    own encoder
=====================  ===========  ===============  =========================
baseline-continued     -            -                trains
mal-frozen-fe          stage-1      -                frozen (decoders train)
mal-frozen             stage-1      -                trains
mal-dynamic            every epoch  -                trains
ext                    -            loss.ext         trains
ext-fe                 -            loss.ext         frozen
ext-mal                stage-1      loss.ext         frozen
wavlm                  -            loss.ssl         trains
wavlm-fe               -            loss.ssl         frozen
wavlm-mal              stage-1      loss.ssl         frozen
=====================  ===========  ===============  =========================

The external network (``loss.ext.kind``: DeepFilterNet encoder, NISQA, WavLM, ...) is frozen
and kept out of the checkpoint and the optimiser (:mod:`mal.losses.external`).
"""

from __future__ import annotations

import math

import lightning as L
import torch

from mal.losses import DFLoss, ModelAsLoss, SSLFeatureLoss, build_external_loss, si_sdr
from mal.models import build_model
from mal.training.variants import VARIANTS, check_variant, loss_weights

__all__ = ["VARIANTS", "EnhancementTask", "check_variant"]


class EnhancementTask(L.LightningModule):
    """Trains an enhancement model with L_df and, in stage 2, a variant's extra losses."""

    def __init__(self, config: dict, model_spec: dict | None = None):
        super().__init__()
        model_spec = model_spec or config["model"]
        self.save_hyperparameters({"config": config, "model_spec": model_spec})
        self.config = config
        self.model = build_model(model_spec)
        self.df_loss = DFLoss.for_model(self.model)
        variant = config["finetune"]["variant"]
        check_variant(variant)
        _, self.refresh_each_epoch, _, self.freeze_encoder = VARIANTS.get(variant, (False, False, None, False))
        losses = config["loss"]
        weights = loss_weights(config)  # a variant that asks for MAL or SSL turns it on at weight 1
        self.mal_weight, self.ssl_weight, self.ext_weight = weights["mal"], weights["ssl"], weights["ext"]
        self.refresh_every_steps = config["finetune"]["refresh_every_steps"]
        self.mal_loss = None
        if self.mal_weight > 0:
            self.mal_loss = ModelAsLoss(self.model, stages=losses["mal"]["stages"], ema_decay=losses["mal"]["ema_decay"])
        self.ssl_loss = None
        if self.ssl_weight > 0:
            ssl = losses["ssl"]
            self.ssl_loss = SSLFeatureLoss(ssl["ssl_model_path"], kind=ssl["kind"], layer=ssl["layer"], sample_rate=self.model.sample_rate)
        self.ext_loss = None
        if self.ext_weight > 0:
            self.ext_loss = build_external_loss(losses["ext"], sample_rate=self.model.sample_rate)
        frozen = self.model.unlossed_parameters() + (self.model.encoder_parameters() if self.freeze_encoder else [])
        for p in frozen:
            p.requires_grad_(False)
        # The L_mal scale found by loss.mal.balance (1 = none); a buffer, so checkpoints carry it.
        self.register_buffer("mal_balance", torch.ones(()))
        self.train()  # Lightning keeps module modes as built: apply the frozen encoder's eval now

    def on_train_start(self) -> None:
        n = int(self.config["loss"]["mal"].get("balance") or 0)
        if self.mal_loss is None or n <= 0 or self.global_step > 0:  # resumed runs keep their scale
            return
        self.mal_balance.copy_(self.measure_balance(self.trainer.train_dataloader, n))
        print(f"loss.mal.balance: L_mal scaled by {float(self.mal_balance):.4g} (equal to the weighted L_df "
              f"over the first {n} batches)")

    @torch.no_grad()
    def measure_balance(self, batches, n: int) -> torch.Tensor:
        """``weight_df * mean L_df / (weight_mal * mean L_mal)`` over the first ``n`` batches."""
        df = mal = 0.0
        was_training = self.training
        self.eval()
        for i, (noisy, clean) in enumerate(batches):
            if i == n:
                break
            noisy, clean = noisy.to(self.device), clean.to(self.device)
            enhanced = self.model(noisy)
            df += float(self.df_loss(enhanced, clean))
            mal += float(self.mal_loss(enhanced, clean))
        self.train(was_training)
        weight_df = float(self.config["loss"]["df"]["weight"])
        return torch.tensor(weight_df * df / max(self.mal_weight * mal, 1e-12), device=self.mal_balance.device)

    # -- Model-as-Loss snapshot schedule -------------------------------------------------
    def take_snapshot(self) -> None:
        """Re-take the MAL-encoder snapshot from the model's current encoder."""
        if self.mal_loss is not None:
            self.mal_loss.refresh(self.model)

    def on_train_epoch_start(self) -> None:
        if self.mal_loss is not None and self.refresh_each_epoch:
            if self.mal_loss.ema_decay is None:
                self.take_snapshot()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        k = self.refresh_every_steps
        if self.mal_loss is not None and self.refresh_each_epoch and k and self.global_step % int(k) == 0:
            self.take_snapshot()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.mal_loss is not None and self.refresh_each_epoch and self.mal_loss.ema_decay is not None:
            self.mal_loss.update_ema(self.model)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoder:
            self.model.encoder.eval()  # frozen BatchNorm statistics too
        return self

    # -- steps ---------------------------------------------------------------------------
    def compute_losses(self, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """(total loss, {"df"/"mal"/"ssl"/"ext": term}, enhanced) for one batch."""
        enhanced = self.model(noisy)
        parts = {"df": self.df_loss(enhanced, clean)}
        total = float(self.config["loss"]["df"]["weight"]) * parts["df"]
        if self.mal_loss is not None:
            parts["mal"] = self.mal_loss(enhanced, clean)
            total = total + self.mal_weight * self.mal_balance * parts["mal"]
        if self.ssl_loss is not None:
            parts["ssl"] = self.ssl_loss(enhanced, clean)
            total = total + self.ssl_weight * parts["ssl"]
        if self.ext_loss is not None:
            parts["ext"] = self.ext_loss(enhanced, clean)
            total = total + self.ext_weight * parts["ext"]
        return total, parts, enhanced

    def training_step(self, batch, batch_idx):
        noisy, clean = batch
        total, parts, _ = self.compute_losses(noisy, clean)
        if not torch.isfinite(total):
            raise RuntimeError(
                f"non-finite training loss at step {self.global_step} ({ {k: float(v.detach()) for k, v in parts.items()} }); "
                "stopping before NaN weights are written - lower optim.lr or check the data"
            )
        # per step (train/loss_step) and as the epoch's mean (train/loss_epoch), both in metrics.csv
        self.log("train/loss", total, prog_bar=True, on_step=True, on_epoch=True, batch_size=noisy.shape[0])
        for name, value in parts.items():
            self.log(f"train/{name}", value)
        return total

    def on_before_optimizer_step(self, optimizer) -> None:
        # A finite loss can still give non-finite gradients (e.g. a sqrt at 0); stepping with
        # them would turn every weight into NaN. Checked before clipping, which would spread them.
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            raise RuntimeError(
                f"non-finite gradient at step {self.global_step}; stopping before NaN weights are written - "
                "lower optim.lr or check the data"
            )

    def validation_step(self, batch, batch_idx):
        noisy, clean = batch
        total, parts, enhanced = self.compute_losses(noisy, clean)
        batch_size = noisy.shape[0]
        self.log("val/loss", total, prog_bar=True, sync_dist=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"val/{name}", value, sync_dist=True, batch_size=batch_size)
        self.log("val/si_sdr", si_sdr(enhanced, clean).mean(), prog_bar=True, sync_dist=True, batch_size=batch_size)
        self.log("val/si_sdr_noisy", si_sdr(noisy, clean).mean(), sync_dist=True, batch_size=batch_size)

    def configure_optimizers(self):
        opt = self.config["optim"]
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=opt["lr"], weight_decay=opt["weight_decay"], betas=tuple(opt["betas"]))
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup, floor = int(opt["warmup_steps"]), float(opt["min_lr_ratio"])

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to `floor`
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
