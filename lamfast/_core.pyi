# Type stub of the compiled core. Regenerate after changing csrc/bindings.cpp:
#   pybind11-stubgen lamfast._core -o <dir>   (tests/test_core_stub.py checks it is current)
"""
lamfast C++ core: tokenizer, training sampler, XP text parser, sky cross-match, CPU attention
"""
from __future__ import annotations
import numpy
import numpy.typing
import typing
import typing_extensions
__all__: list[str] = ['XmatchIndex', 'attention_backward', 'attention_forward', 'attention_forward_bf16', 'attention_isa', 'attention_isas', 'attention_supports', 'parse_xp_text', 'parse_xp_text_into', 'sample', 'tokenize', 'xmatch_all', 'xmatch_build', 'xmatch_nearest', 'xmatch_one_to_one', 'xmatch_propagate']
class XmatchIndex:
    @property
    def n_cells(self) -> int:
        ...
    @property
    def size(self) -> int:
        ...
    @property
    def zone_height_deg(self) -> float:
        ...
def attention_backward(dout: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], q: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], out: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], lse: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], cu_q: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], cu_k: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], bias_k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, bias_v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, scale: typing.SupportsFloat | typing.SupportsIndex, dq: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], dk: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], dv: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], dbias_k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, dbias_v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, threads: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Varlen attention backward into dq, dk, dv (and dbias_k/v).
    """
def attention_forward(q: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], cu_q: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], cu_k: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], bias_k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, bias_v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, scale: typing.SupportsFloat | typing.SupportsIndex, out: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], lse: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], threads: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Varlen attention forward into out [Tq, H, D] and lse [Tq, H] (float32).
    """
def attention_forward_bf16(q: typing.Annotated[numpy.typing.ArrayLike, numpy.int16], k: typing.Annotated[numpy.typing.ArrayLike, numpy.int16], v: typing.Annotated[numpy.typing.ArrayLike, numpy.int16], cu_q: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], cu_k: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], bias_k: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, bias_v: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, scale: typing.SupportsFloat | typing.SupportsIndex, out: typing.Annotated[numpy.typing.ArrayLike, numpy.int16], lse: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], threads: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Varlen attention forward on bf16 q/k/v (their bits as int16) into bf16 out [Tq, H, D] (int16 bits) and float32 lse [Tq, H]; computed in float32, inference only.
    """
def attention_isa() -> str:
    """
    Instruction set of the CPU attention kernels: 'avx512', 'avx2' or 'baseline', the best the CPU runs (LAMFAST_CPU_ISA=<name> forces one).
    """
def attention_isas() -> list:
    """
    The instruction sets whose CPU attention kernels this CPU runs, best first.
    """
def attention_supports(head_dim: typing.SupportsInt | typing.SupportsIndex) -> bool:
    """
    Whether the CPU attention kernels are compiled for this head dim.
    """
def parse_xp_text(data: typing_extensions.Buffer, kinds: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], bands: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], indices: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], delimiter: str, correlations: bool, n_extra: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    Gaia XP_CONTINUOUS text rows -> arrays. Returns (error, arrays).
    """
def parse_xp_text_into(data: typing_extensions.Buffer, kinds: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], bands: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], indices: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], delimiter: str, arrays: dict, row0: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    Gaia XP_CONTINUOUS text rows -> rows row0.. of the given arrays. Returns (error, rows, n_lines); n_lines -1: the rows do not fit, nothing parsed.
    """
def sample(values: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], errors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, token_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], star_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], output_weights: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], center: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, inv_scale: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, seed: typing.SupportsInt | typing.SupportsIndex, epoch: typing.SupportsInt | typing.SupportsIndex, context: typing.SupportsInt | typing.SupportsIndex, max_blank: typing.SupportsInt | typing.SupportsIndex, n_outputs: typing.SupportsInt | typing.SupportsIndex, exclude_inputs: bool, threads: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    One epoch of the training sampler. Returns (bad, in_id, in_value, in_error, cu_inputs, target_id, target_value, target_error, cu_targets) or (bad,).
    """
def tokenize(values: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], errors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, token_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], center: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, inv_scale: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None, max_tokens: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    Packed ragged tokens. Returns (bad, id, value, error, cu_seqlens) or (bad,) where bad = (row, col, in_errors) names the first infinite cell.
    """
def xmatch_all(index: XmatchIndex, ra: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], dec: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], pmra: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, pmdec: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, dt: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, radius_rad: typing.SupportsFloat | typing.SupportsIndex, idx1_offset: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    All pairs within radius: (bad, idx1, idx2, sep_arcsec) or (bad,).
    """
def xmatch_build(ra: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], dec: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], zone_height_deg: typing.SupportsFloat | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    Zone index of a catalogue (degrees). Returns (bad, index) with bad = (row, field) or None.
    """
def xmatch_nearest(index: XmatchIndex, ra: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], dec: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], pmra: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, pmdec: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, dt: typing.Annotated[numpy.typing.ArrayLike, numpy.float64] | None, radius_rad: typing.SupportsFloat | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    k nearest within radius per row: (bad, idx2 [n*k], sep_arcsec [n*k]) or (bad,).
    """
def xmatch_one_to_one(idx1: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], idx2: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], sep: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.int64]:
    """
    Positions of the pairs kept by greedy closest-first one-to-one.
    """
def xmatch_propagate(ra: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], dec: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], pmra: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], pmdec: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], dt: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], threads: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    Positions moved by proper motion: (bad, ra, dec) or (bad,).
    """
