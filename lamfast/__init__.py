"""lamfast: a fast Large Astronomy Model (Leung & Bovy 2024) for whole sky surveys."""

from . import xmatch
from ._threads import get_num_threads, set_num_threads
from .batch import Batch, TrainingBatch
from .normalization import Normalizer
from .sampler import sample_training, sample_training_reference
from .tokenizer import tokenize, tokenize_reference
from .vocab import Vocab

__version__ = "0.1.0"

__all__ = [
    "Batch", "Normalizer", "TrainingBatch", "Vocab", "get_num_threads", "sample_training",
    "sample_training_reference", "set_num_threads", "tokenize", "tokenize_reference",
]
