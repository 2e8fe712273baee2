"""lamfast: a fast Large Astronomy Model (Leung & Bovy 2024) for whole sky surveys."""

from . import xmatch
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from .batch import Batch, TrainingBatch
# The package lamfast.label is bound here, then this rebinds the name to its function
# label(); its other names stay reachable with `from lamfast.label import ...`.
from .label import label
from .label.frame import label_frame
from .normalization import Normalizer
from .sampler import sample_training, sample_training_reference
from .tokenizer import tokenize, tokenize_reference
from .vocab import Vocab

# Torch-backed names load on first use, so `import lamfast` stays light.
# name -> (module, name there); `load` is `load_model`.
_LAZY = {"LAM": ("lamfast.model", "LAM"), "LAMConfig": ("lamfast.model", "LAMConfig"),
         "load_model": ("lamfast.infer", "load_model"), "load": ("lamfast.infer", "load_model"),
         "predict": ("lamfast.infer", "predict")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'lamfast' has no attribute {name!r}")


__all__ = [
    "Batch", "LAM", "LAMConfig", "Normalizer", "TrainingBatch", "Vocab", "get_num_threads", "label", "label_frame",
    "load", "load_model", "predict", "sample_training", "sample_training_reference", "set_num_threads", "tokenize",
    "tokenize_reference",
]
