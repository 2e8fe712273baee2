"""Fused operators: one concern per file (reference, CPU kernels, Triton kernels, dispatch)."""

from .attention_cpu import varlen_attention_cpu
from .attention_reference import varlen_attention_reference
from .varlen_attention import attention_backend, varlen_attention

__all__ = ["attention_backend", "varlen_attention", "varlen_attention_cpu",
           "varlen_attention_reference"]
