"""lamfast: a fast Large Astronomy Model (Leung & Bovy 2024) for whole sky surveys."""

from . import xmatch
from ._threads import get_num_threads, set_num_threads
from .batch import Batch, TrainingBatch
from .label import label  # the function; reach the module's other names with `from lamfast.label import ...`
from .normalization import Normalizer
from .sampler import sample_training, sample_training_reference
from .tokenizer import tokenize, tokenize_reference
from .vocab import Vocab

__version__ = "0.1.0"

# Torch-backed names load on first use, so `import lamfast` stays light.
_LAZY = {"LAM": "lamfast.model", "LAMConfig": "lamfast.model", "load_model": "lamfast.infer"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lamfast' has no attribute {name!r}")


__all__ = [
    "Batch", "LAM", "LAMConfig", "Normalizer", "TrainingBatch", "Vocab", "get_num_threads", "label", "load_model", "sample_training",
    "sample_training_reference", "set_num_threads", "tokenize", "tokenize_reference",
]
