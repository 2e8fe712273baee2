"""``lamfast train``: the command line of :func:`lamfast.train.train`, one flag per
:class:`~lamfast.train_config.TrainConfig` field. Imports no torch until a run starts, so
that ``lamfast --help`` and ``lamfast train --help`` stay fast."""

from __future__ import annotations

import argparse
import dataclasses
import json

from .train_config import TrainConfig

# The names of lamfast.model.PRESETS (that module imports torch); tests check they agree.
PRESET_NAMES = ("lam-2024", "lam-small")

# Help of each TrainConfig field's flag; argparse appends the default.
FIELD_HELP = {
    "preset": "model architecture to train: lam-2024 is the paper's (8.8 M parameters), "
              "lam-small a 315 k-parameter model that trains on a CPU",
    "model_overrides": 'JSON object of LAMConfig fields that replace the preset\'s, e.g. \'{"width": 64}\'',
    "context": "tokens per star the model sees (its context length)",
    "max_blank": "at most this many of a star's tokens are left out of its inputs per draw",
    "full_context_share": "share of epochs (0 to 1) drawn with no token left out, spread evenly, so "
                          "that the model also trains at the full context labelling uses",
    "n_outputs": "tokens requested (predicted) per star per step",
    "exclude_inputs": "never request a token that is among the star's inputs",
    "label_weight": "draw weight of Teff, logg and [M/H] as outputs, against 1 for every other token",
    "epochs": "passes over the training stars",
    "batch_size": "stars per optimiser step (per process under torchrun)",
    "lr": "peak learning rate of AdamW",
    "weight_decay": "AdamW weight decay",
    "restart_epochs": "epochs between warm restarts of the cosine learning-rate schedule",
    "warmup_steps": "optimiser steps of linear learning-rate warm-up (0: none)",
    "grad_clip": "clip the gradient norm to this value",
    "dropout": "dropout probability in the model",
    "precision": "arithmetic: auto is bf16 autocast on CUDA and fp32 on CPU",
    "compile": "compile the model with torch.compile",
    "device": "auto (CUDA if available, else CPU), cpu, cuda or cuda:N",
    "seed": "seed of the weights, the epoch order and the sampler's draws",
    "init_from": "start from the weights of a saved model ('default' or a model folder); its "
                 "feed-forward and head hidden sizes may be widened by --model-overrides "
                 "(empty: random weights)",
    "deterministic": "deterministic kernels, so that --resume continues bit for bit",
    "eval_every": "epochs between validation passes (the last epoch is always validated)",
    "eval_stars": "validation stars scored each pass (headline inputs to labels)",
    "out_dir": "run folder: config.json, log.csv, checkpoint.pt and the final model/",
}
CHOICES = {"preset": PRESET_NAMES, "precision": ("auto", "fp32", "bf16")}
_TYPE_METAVARS = {"int": "N", "float": "X"}
METAVARS = {"model_overrides": "JSON", "init_from": "MODEL", "out_dir": "DIR", "device": "DEVICE"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a LAM on a paper-layout HDF5 file",
        description="Train a Large Astronomy Model on the stars of an HDF5 file in the paper's "
                    "layout: split 0 trains, split 1 validates. Every setting below is saved in "
                    "the run's config.json and checkpoint; the run writes OUT_DIR/model, a model "
                    "folder for `lamfast label --model`. Launch with torchrun for several "
                    "processes or GPUs. The defaults are the paper's settings.")
    p.add_argument("data", help="HDF5 file in the paper's layout with a split column "
                                "(e.g. from `lamfast data build-apogee-xp`)")
    p.add_argument("--resume", action="store_true",
                   help="continue OUT_DIR/checkpoint.pt (same settings; --epochs may grow)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kw = {"help": FIELD_HELP[f.name], "metavar": METAVARS.get(f.name, _TYPE_METAVARS.get(str(f.type)))}
        if f.name in CHOICES:
            kw["choices"], kw["metavar"] = CHOICES[f.name], None
        if f.name == "model_overrides":
            p.add_argument(flag, type=_json_object, default={}, **kw)
        elif f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, **kw)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            p.add_argument(flag, type=kind, default=f.default, **kw)
    p.set_defaults(func=_main)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"need a JSON object such as '{{\"width\": 64}}', got {text!r}")
    return value


def _main(args) -> int:
    import os

    import torch

    from .train import _is_distributed, load_splits, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    if "LOCAL_RANK" in os.environ and not _is_distributed():  # launched by torchrun
        on_gpus = torch.cuda.is_available() and not cfg.device.startswith("cpu")
        torch.distributed.init_process_group("nccl" if on_gpus else "gloo")
        if on_gpus:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
            cfg.device = f"cuda:{os.environ['LOCAL_RANK']}"
    train_set, val_set = load_splits(args.data)
    _, history = train(cfg, train_set, val_set, resume=args.resume, progress=not args.no_progress)
    if _is_distributed():
        torch.distributed.destroy_process_group()
    last = history[-1] if history else {}
    print(json.dumps({"out_dir": cfg.out_dir, **last}))
    return 0
