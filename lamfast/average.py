"""Average the weights of several trained models ("model soup", Wortsman et al. 2022).

Runs fine-tuned from the same starting weights with different settings usually land in
one basin of the loss, where the mean of their weights predicts better than each of them.
The default model is such a mean (resources/README.md).

    lamfast average OUT MODEL MODEL [MODEL ...]
"""

from __future__ import annotations

import os


def average_models(folders: list[str | os.PathLike]):
    """The LAM whose every weight is the mean over ``folders`` (saved models, or "default").
    They must share architecture, vocabulary and normalisation."""
    import torch

    from .infer import load_model

    if len(folders) < 2:
        raise ValueError(f"average needs at least two models, got {len(folders)}")
    models = [load_model(str(f)) for f in folders]
    first = models[0]
    for folder, m in zip(folders[1:], models[1:]):
        if m.config != first.config:
            raise ValueError(f"{folder}: architecture differs from {folders[0]}")
        if m.normalizer != first.normalizer:
            raise ValueError(f"{folder}: vocabulary or normalisation differs from {folders[0]}")
    states = [m.state_dict() for m in models]
    with torch.no_grad():
        first.load_state_dict({k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype)
                               for k, v in states[0].items()})
    return first


def add_parser(sub) -> None:
    p = sub.add_parser(
        "average", help="average the weights of models fine-tuned from one start",
        description="Write the model whose every weight is the mean of the given models' (a "
                    "\"model soup\"). The models must share architecture, vocabulary and "
                    "normalisation, and should be fine-tuned from the same starting weights "
                    "(e.g. `lamfast train --init-from`).")
    p.add_argument("out", help="folder for the averaged model")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="two or more model folders written by LAM.save (or 'default')")
    p.set_defaults(func=_main)


def _main(args) -> int:
    average_models(args.models).save(args.out)
    print(f"averaged {len(args.models)} models into {args.out}")
    return 0
