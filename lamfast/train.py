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
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .io.catalog import Catalog
from .loss import gaussian_nll
from .normalization import Normalizer
from .sampler import sample_training
from .stats import robust_scatter
from .train_config import TrainConfig
from .vocab import HEADLINE_INPUTS, LABELS, PAPER_NON_OUTPUTS


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def epoch_max_blank(cfg: TrainConfig, epoch: int) -> int:
    """The sampler's max_blank in ``epoch``: 0 in a ``full_context_share`` of the epochs,
    spread evenly, so that the model also trains at the full context that labelling uses."""
    share = cfg.full_context_share
    return 0 if math.floor((epoch + 1) * share) > math.floor(epoch * share) else cfg.max_blank


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


def architecture(cfg: TrainConfig, vocab_size: int) -> dict:
    """LAMConfig fields of a run: the preset, its overrides, and the run's settings."""
    from .model import PRESETS

    return {**PRESETS[cfg.preset].to_dict(), **cfg.model_overrides, "dropout": cfg.dropout,
            "context_length": cfg.context, "vocab_size": vocab_size}


def export_checkpoint(checkpoint: str | os.PathLike, folder: str | os.PathLike):
    """Save the model of a training checkpoint as a lamfast model folder (LAM.save);
    works on a run that is still going or was stopped early. Returns the LAM."""
    from .model import LAM, LAMConfig

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    normalizer = Normalizer.from_dict(state["normalizer"])
    cfg = TrainConfig(**state["config"])
    model = LAM(LAMConfig.from_dict(architecture(cfg, len(normalizer.vocab))), normalizer=normalizer)
    model.load_state_dict(state["model"])
    model.save(folder)
    return model


def _init_model(cfg: TrainConfig):
    """The saved model a run continues from (its weights and normalisation)."""
    from .infer import load_model

    return load_model(cfg.init_from)


# Hidden sizes that init_from may widen: new units start with zero outgoing weights.
GROWABLE = ("encoder_ffn", "decoder_ffn", "head_mlp")


def _check_can_start_from(name: str, saved: dict, run: dict) -> None:
    """The run must have the saved architecture, except wider (never narrower, never
    more or fewer layers) feed-forward and head hidden sizes."""
    def fits(key, new):
        old = saved.get(key)
        if key in GROWABLE and old is not None and len(old) == len(new):
            return all(n >= o for n, o in zip(new, old))
        return old == new

    # Dropout and context are settings of the run, not shapes of the weights.
    diff = {k: (saved.get(k), v) for k, v in run.items()
            if k not in ("dropout", "context_length") and not fits(k, v)}
    if diff:
        raise ValueError(f"init_from={name!r} has another architecture than this run "
                         f"(saved, run): {diff}; only {', '.join(GROWABLE)} may grow")


@torch.no_grad()
def _start_from(model: torch.nn.Module, saved: dict) -> None:
    """Load saved weights into ``model``, whose hidden layers may be wider (Net2Net-style
    growth that keeps the function): each saved tensor fills the leading slice of the
    fresh one, and every weight column that reads a new hidden unit is zeroed, so the new
    units start with no say in the output and the grown model predicts exactly as before."""
    for name, param in model.state_dict().items():
        old = saved[name]
        if param.shape == old.shape:
            param.copy_(old)
            continue
        param[tuple(slice(0, n) for n in old.shape)] = old
        if param.ndim == 2:                        # Linear weight [out, in]: new inputs read 0
            param[:, old.shape[1]:] = 0


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is left in place."""


def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank_world() -> tuple[int, int]:
    if _is_distributed():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine annealing with warm restarts every restart_epochs."""
    period = max(1, cfg.restart_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        return warm * 0.5 * (1.0 + math.cos(math.pi * (step % period) / period))

    return factor


def _output_list(columns, label_weight: int) -> dict:
    return {c: (label_weight if c in LABELS else 1) for c in columns if c not in PAPER_NON_OUTPUTS}


class Trainer:
    """Owns the model, optimiser, schedule and the epoch loop of one training run."""

    def __init__(self, cfg: TrainConfig, train: Catalog, val: Catalog | None = None,
                 normalizer: Normalizer | None = None):
        from .model import LAM, LAMConfig

        # Columns with no value in the training set can be neither learned nor standardised.
        empty = [c for c in train.columns if not np.isfinite(train.column(c)).any()]
        if empty:
            keep = [c for c in train.columns if c not in empty]
            train = train.select(keep)
            val = val.select(keep) if val is not None else None
        self.cfg, self.train_set, self.val_set = cfg, train, val
        self.dropped_columns = empty
        self.device = resolve_device(cfg.device)
        self.rank, self.world = _rank_world()
        self.out = Path(cfg.out_dir)
        torch.manual_seed(cfg.seed)
        # Some multi-threaded CPU kernels (e.g. index_put_ with accumulation in backward)
        # reduce in a scheduling-dependent order; resumable runs need them deterministic.
        torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
        init = _init_model(cfg) if cfg.init_from else None
        if normalizer is None:
            normalizer = init.normalizer if init is not None and init.normalizer is not None \
                else Normalizer.fit(train.values, train.columns)
        self.normalizer = normalizer
        arch = architecture(cfg, len(self.normalizer.vocab))
        self.model = LAM(LAMConfig.from_dict(arch), normalizer=self.normalizer)
        if init is not None:
            _check_can_start_from(cfg.init_from, init.config.to_dict(), self.model.config.to_dict())
            _start_from(self.model, init.state_dict())
        self.model.to(self.device)
        self.ddp = self.model
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model)
        self.forward = torch.compile(self.ddp) if cfg.compile else self.ddp
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.stars_per_rank = len(train) // self.world
        self.steps_per_epoch = math.ceil(self.stars_per_rank / cfg.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_factor(cfg, self.steps_per_epoch))
        self.outputs = _output_list(train.columns, cfg.label_weight)
        self.epoch, self.step = 0, 0
        self.best = {}
        self.elapsed_s = 0.0   # training wall time, carried over resumes

    # ---- one epoch ----------------------------------------------------------------------

    def _autocast(self):
        p = self.cfg.precision
        if p == "auto":
            p = "bf16" if self.device.type == "cuda" else "fp32"
        if p == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        if p == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        raise ValueError(f"precision must be auto, fp32 or bf16, got {p!r}")

    def _draw(self, epoch: int) -> dict:
        """This rank's stars in this epoch's order, sampled and packed."""
        order = _epoch_order(self.cfg.seed, epoch, len(self.train_set))
        mine = order[self.rank::self.world][:self.stars_per_rank]
        s = self.train_set
        b = sample_training(s.values[mine], s.columns, errors=s.errors[mine], epoch=epoch,
                            seed=self.cfg.seed, context=self.cfg.context,
                            max_blank=epoch_max_blank(self.cfg, epoch), n_outputs=self.cfg.n_outputs,
                            outputs=self.outputs, exclude_inputs=self.cfg.exclude_inputs,
                            star_ids=mine.astype(np.int64), normalizer=self.normalizer)
        return {k: getattr(b, k) for k in ("token_id", "value", "cu_seqlens", "target_id",
                                           "target_value", "target_error", "cu_targets")}

    def train_epoch(self, progress=None) -> float:
        self.ddp.train()
        packed = self._draw(self.epoch)
        total, count = 0.0, 0
        for a in range(0, self.stars_per_rank, self.cfg.batch_size):
            b = _slice(packed, a, min(a + self.cfg.batch_size, self.stars_per_rank))
            t = {k: (torch.from_numpy(v).to(self.device) if isinstance(v, np.ndarray) else v)
                 for k, v in b.items()}
            with self._autocast():
                mu, logvar = self.forward(t["token_id"], t["value"], t["cu_seqlens"],
                                          t["max_seqlen"], t["target_id"], t["cu_targets"],
                                          t["max_targets"])
            loss = gaussian_nll(mu, logvar, t["target_value"], t["target_error"], t["cu_targets"])
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at epoch {self.epoch}, step {self.step}; the last "
                    f"good checkpoint in {self.out} is kept (try a lower lr or grad_clip)")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            total, count = total + loss.item(), count + 1
            if progress is not None:
                progress.update(b["cu_seqlens"].shape[0] - 1)
                progress.set_postfix(loss=f"{total / count:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
        self.epoch += 1
        return total / max(count, 1)

    # ---- validation -----------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation loss (a fixed draw) and robust scatter of labels from headline inputs."""
        if self.val_set is None:
            return {}
        val = self.val_set.rows(slice(0, self.cfg.eval_stars))
        self.model.eval()
        out = {}
        b = sample_training(val.values, val.columns, errors=val.errors, epoch=0,
                            seed=self.cfg.seed + 1, context=self.cfg.context,
                            max_blank=self.cfg.max_blank, n_outputs=self.cfg.n_outputs,
                            outputs=self.outputs, exclude_inputs=self.cfg.exclude_inputs,
                            normalizer=self.normalizer)
        t = b.to_torch(self.device)
        with self._autocast():
            mu, logvar = self.model(t["token_id"], t["value"], t["cu_seqlens"], b.max_seqlen,
                                    t["target_id"], t["cu_targets"], b.max_targets)
        out["val_loss"] = gaussian_nll(mu, logvar, t["target_value"], t["target_error"],
                                       t["cu_targets"]).item()
        inputs = [c for c in HEADLINE_INPUTS if c in val.columns]
        labels = [c for c in LABELS if c in val.columns]
        if inputs and labels:
            from .tokenizer import tokenize

            x = val.select(inputs)
            batch = tokenize(x.values, inputs, normalizer=self.normalizer)
            ids = self.normalizer.vocab.ids(labels)
            n, r = batch.n_stars, len(labels)
            tb = batch.to_torch(self.device)
            with self._autocast():
                mu, _ = self.model(tb["token_id"], tb["value"], tb["cu_seqlens"], batch.max_seqlen,
                                   torch.from_numpy(np.tile(ids, n)).to(self.device),
                                   torch.arange(0, n * r + 1, r, dtype=torch.int32, device=self.device), r)
            pred = self.normalizer.unstandardize(mu.float().view(n, r).cpu().numpy(), ids[None, :])
            for j, name in enumerate(labels):
                out[f"{name}_scatter"] = robust_scatter(val.column(name) - pred[:, j])
        self.model.train()
        return out

    # ---- checkpoints ------------------------------------------------------------------------

    def state(self) -> dict:
        return {"config": self.cfg.to_dict(), "epoch": self.epoch, "step": self.step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "normalizer": self.normalizer.to_dict(),
                "torch_rng": torch.get_rng_state(), "best": self.best, "elapsed_s": self.elapsed_s,
                # dropout on a GPU draws from the device's generator
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def save_checkpoint(self) -> Path:
        from .atomic import atomic_path

        path = self.out / "checkpoint.pt"
        if self.rank == 0:
            with atomic_path(path) as tmp:
                torch.save(self.state(), tmp)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["config"] != self.cfg.to_dict():
            diff = {k: (state["config"].get(k), v) for k, v in self.cfg.to_dict().items()
                    if state["config"].get(k) != v and k not in ("epochs", "out_dir")}
            if diff:
                raise ValueError(f"checkpoint {path} was made with other settings: {diff}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self.elapsed_s = state.get("elapsed_s", 0.0)
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the device
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)

    # ---- the loop -----------------------------------------------------------------------------

    def fit(self, progress: bool = True) -> list[dict]:
        """Train until cfg.epochs; log to out_dir/log.csv; checkpoint each epoch."""
        from tqdm.auto import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1))
        log_path = self.out / "log.csv"
        history = []
        start = time.perf_counter() - self.elapsed_s
        bar = tqdm(total=(self.cfg.epochs - self.epoch) * self.stars_per_rank, unit="star",
                   disable=not progress or self.rank != 0, desc="training")
        while self.epoch < self.cfg.epochs:
            train_loss = self.train_epoch(bar)
            self.elapsed_s = time.perf_counter() - start
            row = {"epoch": self.epoch, "step": self.step, "train_loss": train_loss,
                   "lr": self.scheduler.get_last_lr()[0], "elapsed_s": round(self.elapsed_s, 2)}
            if self.val_set is not None and (self.epoch % self.cfg.eval_every == 0
                                             or self.epoch == self.cfg.epochs):
                row.update(self.evaluate())
                bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()))
            history.append(row)
            if self.rank == 0:
                new = not log_path.exists()
                with open(log_path, "a", newline="") as f:
                    w = csv.DictWriter(f, list(row))
                    if new:
                        w.writeheader()
                    w.writerow(row)
            self.save_checkpoint()
        bar.close()
        if self.rank == 0:
            self.model.save(self.out / "model")
        return history


def train(cfg: TrainConfig, train: Catalog, val: Catalog | None = None, *,
          resume: bool = False, progress: bool = True):
    """Train a LAM; returns (model, history). ``resume`` continues out_dir/checkpoint.pt."""
    trainer = Trainer(cfg, train, val)
    ckpt = Path(cfg.out_dir) / "checkpoint.pt"
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        trainer.load_checkpoint(ckpt)
    history = trainer.fit(progress=progress)
    return trainer.model, history


# ---- command line ---------------------------------------------------------------------------

def load_splits(path: str | os.PathLike) -> tuple[Catalog, Catalog | None]:
    """Train and validation stars of a file in the paper's HDF5 layout with a split column
    (0 = train, 1 = validation, 2 = test), as `lamfast data build-apogee-xp` writes."""
    from .io.paper_hdf5 import read_paper_hdf5

    cat = read_paper_hdf5(path, nan_label_errors_to_zero=True)
    if "split" not in cat.extra:
        raise ValueError(f"{path}: no 'split' dataset; cannot tell training from validation stars")
    split = cat.extra["split"]
    val = cat.rows(split == 1) if np.any(split == 1) else None
    return cat.rows(split == 0), val
