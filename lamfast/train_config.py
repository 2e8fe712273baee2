"""The settings of a training run (:class:`TrainConfig`), apart from the training code so
that the command line (:mod:`lamfast.train_cli`) builds its flags without importing torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    # model
    preset: str = "lam-2024"
    model_overrides: dict = field(default_factory=dict)  # e.g. {"width": 64}
    # sampler (paper defaults)
    context: int = 64
    max_blank: int = 59
    full_context_share: float = 0.0  # share of epochs drawn unblanked (inputs = full context)
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
    init_from: str = ""           # start from a saved model's weights ("default" or a folder);
                                  # its FFN/head hidden sizes may grow (see _start_from)
    deterministic: bool = True    # deterministic kernels: resume is then bit for bit
    # bookkeeping
    eval_every: int = 1           # epochs between validation passes
    eval_stars: int = 5000        # validation stars scored (headline inputs -> labels)
    out_dir: str = "runs/lam"

    def __post_init__(self):
        if not 0.0 <= self.full_context_share <= 1.0:
            raise ValueError(f"full_context_share must be in [0, 1], got {self.full_context_share!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
