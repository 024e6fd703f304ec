"""The Lightning module for QAT: the fake-quantized detector, trained at a low LR, validated as it is (int8
simulated, no EMA), with BN statistics and then the quantizer ranges frozen after configurable epochs."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from trainer.checkpoint import CKPT_KEY, checkpoint_info
from trainer.module import DetectorModule
from trainer.qat_model import freeze_bn, freeze_quantizers, int8_dfl_bins, is_quantizer_param

#: Where a QAT checkpoint keeps its scheme (target, float ops) and source, beside the usual block.
QAT_KEY = "qat"


class QatModule(DetectorModule):
    """A DetectorModule whose `model` is replaced by its fake-quantized copy (`attach`)."""

    def __init__(self, model: dict[str, Any], names: dict[int, str], imgsz: int, optim: dict[str, Any],
                 qat: dict[str, Any]) -> None:
        super().__init__(model, names, imgsz, optim=optim, channels_last=False)
        self.qat = dict(qat)
        self.ema = None  # type: ignore[assignment]  # the quantized model is validated as it is

    def attach(self, quantized: nn.Module) -> None:
        """Train `quantized` (NNCF-wrapped, ranges set) instead of the float model. Lightning keeps each
        submodule's train/eval mode as it finds it, so the model is put in train mode here."""
        self.model = quantized.train()  # type: ignore[assignment]
        self._sync_dfl_bins()

    def _sync_dfl_bins(self) -> None:
        """Where the DFL is int8, the loss decodes and fits boxes with its int8 bin values (not 0, 1, 2, ...):
        the DFL's weights are fixed, so the network learns distributions whose expectation on the deployed
        grid is the right distance."""
        bins = int8_dfl_bins(self.model)
        if bins is not None:
            self.criterion.set_bins(bins)

    # ---- freezing -------------------------------------------------------------------------
    def _bn_frozen(self) -> bool:
        return self.current_epoch >= int(self.qat["freeze_bn_epoch"])

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.current_epoch >= int(self.qat["freeze_quantizers_epoch"]):
            freeze_quantizers(self.model)
        self._sync_dfl_bins()
        self.log("qat/bn_frozen", float(self._bn_frozen()), on_step=False, on_epoch=True, batch_size=1)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._bn_frozen():
            freeze_bn(self.model)  # Lightning puts the whole module back in train mode each epoch
        super().on_train_batch_start(batch, batch_idx)

    # ---- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """DetectorModule's optimizer over the quantized model, with the quantizer ranges moved out of the
        weight-decayed group into one of their own (no decay)."""
        opt = super().configure_optimizers()
        quant = {id(p) for n, p in self.model.named_parameters() if is_quantizer_param(n)}
        decay = opt.param_groups[0]
        ranges = [p for p in decay["params"] if id(p) in quant]
        decay["params"] = [p for p in decay["params"] if id(p) not in quant]
        opt.add_param_group({"params": ranges, "weight_decay": 0.0, "kind": "quantizer", "base_lr": decay["base_lr"],
                             "warmup_start_lr": 0.0})
        return opt

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        L.LightningModule.optimizer_step(self, *args, **kwargs)  # no EMA

    # ---- validation: the int8-simulated model itself ------------------------------------------
    def val_model(self) -> nn.Module:
        return self.model

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint_info(self.model_config, self.names, self.imgsz)
        checkpoint[CKPT_KEY] = info | {QAT_KEY: self.qat}

