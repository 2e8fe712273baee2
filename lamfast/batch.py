"""Packed ragged token sets: flat tokens + cu_seqlens (FlashAttention varlen layout)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class Batch:
    """Star i owns tokens ``cu_seqlens[i]:cu_seqlens[i+1]`` (possibly none)."""

    token_id: np.ndarray    # [T] int32 vocabulary ids
    value: np.ndarray       # [T] float32 (standardised if a normalizer was given)
    cu_seqlens: np.ndarray  # [N+1] int32, cu_seqlens[0] = 0
    max_seqlen: int
    error: np.ndarray | None = None  # [T] float32 input uncertainties, if given

    @property
    def n_stars(self) -> int:
        return len(self.cu_seqlens) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.token_id)

    def seqlens(self) -> np.ndarray:
        """[N] int32 tokens per star."""
        return np.diff(self.cu_seqlens)

    def to_torch(self, device="cpu") -> dict:
        """Arrays as torch tensors on ``device`` (ints stay int32, as the kernels want)."""
        import torch

        out = {}
        for f in fields(self):
            x = getattr(self, f.name)
            if isinstance(x, np.ndarray):
                out[f.name] = torch.from_numpy(x).to(device, non_blocking=True)
            else:
                out[f.name] = x
        return out

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True


@dataclass(eq=False)
class TrainingBatch(Batch):
    """A Batch of inputs plus the tokens each star must predict."""

    target_id: np.ndarray = None     # [R] int32 requested token ids
    target_value: np.ndarray = None  # [R] float32 truth (standardised)
    target_error: np.ndarray = None  # [R] float32 label error (standardised), NaN -> 0
    cu_targets: np.ndarray = None    # [N+1] int32
    max_targets: int = 0

    def target_counts(self) -> np.ndarray:
        """[N] int32 requests per star."""
        return np.diff(self.cu_targets)
