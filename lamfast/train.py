"""Lean self-supervised training of the LAM, in the spirit of nanoGPT: every knob in
:class:`TrainConfig` (and on the command line), the config saved in each checkpoint.

Each epoch the C++ sampler draws fresh inputs and requested targets for every star
(paper scheme by default: context 64, blank 0..59 trailing tokens, one output among all
tokens but bprp and jk), stars are visited in a seeded random order in mini-batches of
packed ragged sets, and the loss is the paper's Gaussian NLL with label errors.
Checkpoints are written atomically at epoch ends; ``resume`` continues bit for bit.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .io.catalog import Catalog
from .loss import gaussian_nll
from .normalization import Normalizer
from .sampler import sample_training
from .vocab import LABELS, PAPER_NON_OUTPUTS, XP_BP, XP_RP

HEADLINE_INPUTS = XP_BP[:30] + XP_RP[:30] + ("jh", "jk", "bprp")


@dataclass
class TrainConfig:
    # model
    preset: str = "lam-2024"
    model_overrides: dict = field(default_factory=dict)  # e.g. {"width": 64}
    # sampler (paper defaults)
    context: int = 64
    max_blank: int = 59
    n_outputs: int = 1            # requests per star per step (paper: 1)
    exclude_inputs: bool = False  # never request a token that is among the inputs
    label_weight: int = 1         # draw weight of teff/logg/m_h vs 1 for other outputs
    # optimisation (paper: AdamW 1e-4, batch 1024, 4096 epochs, warm restarts every 512)
    epochs: int = 4096
    batch_size: int = 1024
    lr: float = 1e-4
    weight_decay: float = 0.01
    restart_epochs: int = 512     # CosineAnnealingWarmRestarts T_0, in epochs
    warmup_steps: int = 0
    grad_clip: float = 1.0
    dropout: float = 0.1
    precision: str = "auto"       # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32/bf16
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    # bookkeeping
    eval_every: int = 1           # epochs between validation passes
    eval_stars: int = 5000        # validation stars scored (headline inputs -> labels)
    out_dir: str = "runs/lam"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def robust_scatter(x: np.ndarray) -> float:
    """1.4826 * median absolute deviation (astropy's mad_std), ignoring NaN."""
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def _slice(t: dict, a: int, b: int) -> dict:
    """Stars a..b-1 of a packed epoch (dict of numpy arrays) as a packed batch."""
    i0, i1 = t["cu_seqlens"][a], t["cu_seqlens"][b]
    r0, r1 = t["cu_targets"][a], t["cu_targets"][b]
    cu = t["cu_seqlens"][a:b + 1] - i0
    cu_t = t["cu_targets"][a:b + 1] - r0
    return {"token_id": t["token_id"][i0:i1], "value": t["value"][i0:i1], "cu_seqlens": cu,
            "max_seqlen": int(np.diff(cu).max(initial=0)),
            "target_id": t["target_id"][r0:r1], "target_value": t["target_value"][r0:r1],
            "target_error": t["target_error"][r0:r1], "cu_targets": cu_t,
            "max_targets": int(np.diff(cu_t).max(initial=0))}
