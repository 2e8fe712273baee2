"""LAM: the Large Astronomy Model (Leung & Bovy 2024) on packed ragged token sets.

A star is a set of (token id, standardised value) pairs; a batch is flat tokens plus
``cu_seqlens`` (see :class:`lamfast.Batch`), never padded. Requests (the tokens to
predict) are packed the same way with ``cu_targets``; they never interact, so every
request of every star goes through the decoder in one pass.

    embedding    GELU(E[t] * x + B[t])                                  # [T, W]
    encoder      post-LN blocks: y = LN(x + SelfAttn(x)); LN(y + FFN(y))
    decoder      post-LN blocks, cross-attention only: queries start as E[t_request]
    head         MLP (GELU) -> mu, log-variance                         # [R], [R]

Every attention has one learned bias key/value (``add_bias_kv``), so a star without
tokens is still defined. Preset ``lam-2024`` is the paper's model (8,845,529 parameters).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .normalization import Normalizer
from .ops import varlen_attention
from .resources import CONFIG_FILE, WEIGHTS_FILE, resolve_model
from .vocab import Vocab

FORMAT = "lamfast-lam"
FORMAT_VERSION = 1


@dataclass
class LAMConfig:
    """Architecture. One entry per block in the per-block tuples."""

    vocab_size: int = 119                                    # token ids incl. padding 0
    width: int = 128
    encoder_heads: tuple[int, ...] = (16, 8)
    encoder_ffn: tuple[int, ...] = (1024, 512)
    decoder_heads: tuple[int, ...] = (16, 8, 4)
    decoder_ffn: tuple[int, ...] = (3096, 1548, 774)
    head_mlp: tuple[int, ...] = (3096, 1548, 774, 387)     # decoder MLP hidden widths
    dropout: float = 0.1                                     # residual branches and head MLP
    context_length: int = 64                                 # tokens per star in training
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        for f in ("encoder_heads", "encoder_ffn", "decoder_heads", "decoder_ffn", "head_mlp"):
            setattr(self, f, tuple(int(x) for x in getattr(self, f)))
        if len(self.encoder_heads) != len(self.encoder_ffn):
            raise ValueError("encoder_heads and encoder_ffn need one entry per encoder block")
        if len(self.decoder_heads) != len(self.decoder_ffn):
            raise ValueError("decoder_heads and decoder_ffn need one entry per decoder block")
        for heads in self.encoder_heads + self.decoder_heads:
            if heads < 1 or self.width % heads:
                raise ValueError(f"width {self.width} is not divisible by {heads} heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> LAMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LAM config keys: {sorted(unknown)}")
        return cls(**d)


PRESETS = {
    "lam-2024": LAMConfig(),
    # CPU-trainable and small to ship (315,586 parameters, 1.3 MB): width 64, the paper's
    # pattern of halving heads per block with head dims 8/16/32 (all with C++ CPU kernels),
    # light FFNs; 28x fewer parameters than lam-2024 and 2.6x its training stars/s on a
    # busy 2-core CPU (benchmarks/bench_train.py).
    "lam-small": LAMConfig(width=64, encoder_heads=(8, 4), encoder_ffn=(256, 256),
                           decoder_heads=(8, 4, 2), decoder_ffn=(256, 256, 256),
                           head_mlp=(256, 128)),
}


def _gelu(x):
    return F.gelu(x)  # exact erf form, as the paper


def _onednn_linear_pointwise():
    """oneDNN's linear with a fused post-op (CPU), or None where this torch build lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_LINEAR_POINTWISE = _onednn_linear_pointwise()
# The fused op's dtypes on this CPU: oneDNN has no bf16 inner product without AVX-512
# (AMD Zen 3, say), where F.linear still computes bf16 through another kernel.
_FUSED_DTYPES = (torch.float32,) + ((torch.bfloat16,) if _LINEAR_POINTWISE is not None
                                    and torch.ops.mkldnn._is_mkldnn_bf16_supported() else ())


def cpu_runs_bf16_gemms() -> bool:
    """True where this CPU's dense layers run bf16 in oneDNN's GEMMs (AVX-512 BF16, AMX):
    there bf16 inference is faster than fp32; without (AVX2 only) it is several times slower."""
    return torch.bfloat16 in _FUSED_DTYPES


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
            gelu: bool = False) -> torch.Tensor:
    """x @ weight.T + bias, then exact GELU if ``gelu``: [T, in] -> [T, out].

    On CPU without autograd this is one oneDNN call with the bias (and GELU) applied inside
    the GEMM, instead of a bias broadcast before and a GELU pass after over [T, out]
    (15-25% of a forward on CPU); the same values up to rounding."""
    fused = (_LINEAR_POINTWISE is not None and x.device.type == "cpu"
             and not torch.is_grad_enabled() and x.dim() == 2)
    if fused and torch.is_autocast_enabled("cpu"):  # the op is not autocast-aware: cast as F.linear would
        dtype = torch.get_autocast_dtype("cpu")
        x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
    if not fused or x.dtype != weight.dtype or x.dtype not in _FUSED_DTYPES:
        y = F.linear(x, weight, bias)
        return _gelu(y) if gelu else y
    return _LINEAR_POINTWISE(x, weight, bias, "gelu" if gelu else "none", [], "none" if gelu else "")


def _dense(dense: nn.Linear, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    return _linear(x, dense.weight, dense.bias, gelu)


# ---- layers ----------------------------------------------------------------------------

class NonLinearEmbedding(nn.Module):
    """Token t with value x -> GELU(E[t] * x + B[t]); a request for t is the raw row E[t]."""

    def __init__(self, vocab_size: int, width: int):
        super().__init__()
        self.embeddings = nn.Parameter(torch.empty(vocab_size, width))
        self.bias = nn.Parameter(torch.empty(vocab_size, width))
        nn.init.uniform_(self.embeddings)
        nn.init.xavier_uniform_(self.bias)
        with torch.no_grad():  # id 0 = padding
            self.embeddings[0].zero_()
            self.bias[0].zero_()

    def forward(self, token_id: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """[T] int, [T] float -> [T, W]."""
        return _gelu(self.embeddings[token_id] * value[:, None].to(self.embeddings.dtype)
                     + self.bias[token_id])

    def query(self, token_id: torch.Tensor) -> torch.Tensor:
        return self.embeddings[token_id]


class VarlenMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention(add_bias_kv=True)`` semantics on packed sets.

    Parameters carry the same names and layout (``in_proj_weight`` [3W, W] = q, k, v rows);
    ``bias_k``/``bias_v`` are stored as [W] (MultiheadAttention: [1, 1, W]).
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.width, self.heads, self.head_dim = width, heads, width // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.bias_k = nn.Parameter(torch.empty(width))
        self.bias_v = nn.Parameter(torch.empty(width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)
        nn.init.xavier_normal_(self.bias_k.view(1, 1, -1))
        nn.init.xavier_normal_(self.bias_v.view(1, 1, -1))

    def memory_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight [2W, W] and bias [2W] that map memory tokens to this layer's keys, values."""
        return self.in_proj_weight[self.width:], self.in_proj_bias[self.width:]

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None,
                cu_q: torch.Tensor, cu_k: torch.Tensor, max_q: int, max_k: int) -> torch.Tensor:
        """x [Tq, W] queries; kv = keys, values [Tk, W] of the memory (None = self-attention
        on x) -> [Tq, W]."""
        w, h, d = self.width, self.heads, self.head_dim
        if kv is None:
            q, k, v = _linear(x, self.in_proj_weight, self.in_proj_bias).view(-1, 3, h, d).unbind(1)
        else:
            q = _linear(x, self.in_proj_weight[:w], self.in_proj_bias[:w]).view(-1, h, d)
            k, v = kv[0].view(-1, h, d), kv[1].view(-1, h, d)
        out = varlen_attention(q, k, v, cu_q, cu_k, max_q, max_k,
                               bias_k=self.bias_k.view(h, d), bias_v=self.bias_v.view(h, d))
        return _dense(self.out_proj, out.reshape(-1, w))


class TransformerBlock(nn.Module):
    """Post-LN: y = LN1(x + Attn); out = LN2(y + W2 GELU(W1 y)) (dropout on both branches)."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float, eps: float):
        super().__init__()
        self.attention = VarlenMultiheadAttention(width, heads)
        self.dense_1 = nn.Linear(width, ffn)
        self.dense_2 = nn.Linear(ffn, width)
        self.layernorm_1 = nn.LayerNorm(width, eps=eps)
        self.layernorm_2 = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)
        for dense in (self.dense_1, self.dense_2):
            _kaiming(dense)

    def forward(self, x, kv, cu_q, cu_k, max_q, max_k):
        y = self.layernorm_1(x + self.dropout(self.attention(x, kv, cu_q, cu_k, max_q, max_k)))
        return self.layernorm_2(y + self.dropout(_dense(self.dense_2, _dense(self.dense_1, y, gelu=True))))


def _kaiming(dense: nn.Linear) -> None:
    nn.init.kaiming_uniform_(dense.weight)
    bound = 1 / dense.in_features ** 0.5
    nn.init.uniform_(dense.bias, -bound, bound)


# ---- the model -------------------------------------------------------------------------

class LAM(nn.Module):
    """The Large Astronomy Model on packed token sets.

    Parameters
    ----------
    config : LAMConfig or preset name (``"lam-2024"``, default)
    vocab : Vocab, default the paper's 118 tokens (must match ``config.vocab_size``)
    normalizer : Normalizer, optional
        Per-token median/scale used by :func:`lamfast.predict` (stored with the model).
    """

    def __init__(self, config: LAMConfig | str = "lam-2024", vocab: Vocab | None = None,
                 normalizer: Normalizer | None = None):
        super().__init__()
        if isinstance(config, str):
            if config not in PRESETS:
                raise ValueError(f"unknown preset {config!r}; presets: {sorted(PRESETS)}")
            config = LAMConfig(**PRESETS[config].to_dict())
        vocab = vocab or (normalizer.vocab if normalizer else Vocab.paper())
        if len(vocab) != config.vocab_size:
            raise ValueError(f"vocabulary has {len(vocab)} ids but config.vocab_size is {config.vocab_size}")
        if normalizer is not None and normalizer.vocab != vocab:
            raise ValueError("normalizer and model vocabularies differ")
        self.config, self.vocab, self.normalizer = config, vocab, normalizer
        c = config
        self.embedding = NonLinearEmbedding(c.vocab_size, c.width)
        block = lambda h, f: TransformerBlock(c.width, h, f, c.dropout, c.layer_norm_eps)
        self.encoder = nn.ModuleList(block(h, f) for h, f in zip(c.encoder_heads, c.encoder_ffn))
        self.decoder = nn.ModuleList(block(h, f) for h, f in zip(c.decoder_heads, c.decoder_ffn))
        widths = (c.width,) + c.head_mlp
        self.head = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.mu_out = nn.Linear(widths[-1], 1)
        self.logvar_out = nn.Linear(widths[-1], 1)
        for dense in (*self.head, self.mu_out, self.logvar_out):
            _kaiming(dense)
        self.head_dropout = nn.Dropout(c.dropout)

    # ---- forward ----------------------------------------------------------------------

    def encode(self, token_id: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor,
               max_seqlen: int) -> torch.Tensor:
        """token_id int [T], value float [T], cu_seqlens int32 [N+1] -> memory [T, W]."""
        x = self.embedding(token_id.long(), value)
        for block in self.encoder:
            x = block(x, None, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)
        return x

    def decode(self, memory: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
               target_id: torch.Tensor, cu_targets: torch.Tensor, max_targets: int):
        """Requests target_id [R] of star i = ``cu_targets[i]:cu_targets[i+1]`` -> mu, logvar [R]."""
        x = self.embedding.query(target_id.long())
        # Keys and values of the memory for every decoder block in one matmul: they depend
        # on the memory only, and one wide GEMM beats several narrow ones.
        weights, biases = zip(*(block.attention.memory_projection() for block in self.decoder))
        kv = _linear(memory, torch.cat(weights), torch.cat(biases)).split(self.config.width, dim=1)
        for i, block in enumerate(self.decoder):
            x = block(x, kv[2 * i:2 * i + 2], cu_targets, cu_seqlens, max_targets, max_seqlen)
        for dense in self.head:
            x = self.head_dropout(_dense(dense, x, gelu=True))
        return _dense(self.mu_out, x)[:, 0], _dense(self.logvar_out, x)[:, 0]

    def forward(self, token_id, value, cu_seqlens, max_seqlen, target_id, cu_targets, max_targets):
        """Packed inputs and requests -> (mu [R], logvar [R]), standardised units."""
        memory = self.encode(token_id, value, cu_seqlens, max_seqlen)
        return self.decode(memory, cu_seqlens, max_seqlen, target_id, cu_targets, max_targets)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- persistence ------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``model.safetensors`` + ``config.json`` (architecture, vocabulary, normalisation)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "architecture": self.config.to_dict(), "vocab": self.vocab.to_list(),
                "normalizer": self.normalizer.to_dict() if self.normalizer else None}
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> LAM:
        """Inverse of :meth:`save` (exact); ``"default"`` loads the shipped model.

        Raises FileNotFoundError if ``folder`` is not a model folder (or, for
        ``"default"``, no default model is installed, or it lacks its weights), and
        ValueError naming the file if ``config.json`` or ``model.safetensors`` is corrupt
        (invalid JSON, another architecture, truncated or foreign weights)."""
        folder = resolve_model(folder)
        config = folder / CONFIG_FILE
        try:
            meta = json.loads(config.read_text())
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"{config}: not valid JSON ({e}); the model folder is corrupt "
                             "(rewrite it with LAM.save)") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{config}: holds a JSON {type(meta).__name__}, not a lamfast model's config")
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder / CONFIG_FILE}: not a lamfast model (format "
                             f"{meta.get('format')!r}); for the authors' format use "
                             "LAM.from_reference_checkpoint")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{folder}: format version {meta['format_version']} is newer than "
                             f"this lamfast reads ({FORMAT_VERSION})")
        try:
            normalizer = Normalizer.from_dict(meta["normalizer"]) if meta.get("normalizer") else None
            model = cls(LAMConfig.from_dict(meta["architecture"]), Vocab(meta["vocab"]), normalizer)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            missing = f"no {e} entry" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"{config}: not a valid lamfast model config ({missing})") from None
        model.load_state_dict(_load_weights(_existing(folder / WEIGHTS_FILE), model, config))
        return model.to(device)

    # ---- the authors' format ----------------------------------------------------------

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under the authors' names and shapes (``weights.pt`` model_state_dict)."""
        return {to_reference_name(k): (v.view(1, 1, -1) if k.endswith(("bias_k", "bias_v")) else v)
                for k, v in self.state_dict().items()}

    def load_reference_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        ours = {to_reference_name(k): k for k in self.state_dict()}
        missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
        if missing or unexpected:
            raise ValueError(f"reference weights do not fit this architecture: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        self.load_state_dict({ours[k]: (v.reshape(-1) if k.endswith(("bias_k", "bias_v")) else v)
                              for k, v in state.items()})

    @classmethod
    def from_reference_checkpoint(cls, folder: str | os.PathLike) -> LAM:
        """Load the authors' checkpoint folder (``config.json`` + ``weights.pt``).

        Architecture from ``nn_config`` (block i of the encoder has heads/2**i and FFN/2**i,
        likewise the decoder; the head MLP is FFN, FFN/2, FFN/4, FFN/8), vocabulary from
        ``tokenizer_config`` and normalisation from ``norm_config``.
        """
        folder = Path(folder)
        with open(_existing(folder / "config.json")) as f:
            ref = json.load(f)
        for key in ("nn_config", "norm_config"):
            if key not in ref:
                raise ValueError(f"{folder / 'config.json'}: no {key!r}; not the authors' checkpoint format")
        nn_config = ref["nn_config"]
        required = ("embedding_dim", "encoder_head_num", "encoder_dense_num", "decoder_head_num",
                    "decoder_dense_num")
        if any(k not in nn_config for k in required):
            raise ValueError(f"{folder / 'config.json'}: nn_config lacks "
                             f"{[k for k in required if k not in nn_config]}")
        for key in ("embedding_activation", "encoder_activation", "decoder_activation"):
            if nn_config.get(key, "gelu") != "gelu":
                raise ValueError(f"{folder}: {key} = {nn_config[key]!r}; lamfast supports gelu only")
        normalizer = Normalizer.from_reference_config(ref)
        eh, ef = nn_config["encoder_head_num"], nn_config["encoder_dense_num"]
        dh, df = nn_config["decoder_head_num"], nn_config["decoder_dense_num"]
        config = LAMConfig(vocab_size=len(normalizer.vocab), width=nn_config["embedding_dim"],
                           encoder_heads=(eh, eh // 2), encoder_ffn=(ef, ef // 2),
                           decoder_heads=(dh, dh // 2, dh // 4), decoder_ffn=(df, df // 2, df // 4),
                           head_mlp=(df, df // 2, df // 4, df // 8),
                           dropout=nn_config.get("encoder_dropout_rate", 0.1),
                           context_length=nn_config.get("context_length", 64))
        model = cls(config, normalizer.vocab, normalizer)
        checkpoint = torch.load(_existing(folder / "weights.pt"), map_location="cpu", weights_only=True)
        model.load_reference_state_dict(checkpoint.get("model_state_dict", checkpoint))
        return model


_REFERENCE_PREFIXES = [  # (ours, theirs); block/layer numbers shift by 1 (decoder MLP by 3)
    (r"^embedding\.", "embedding_layer."),
    (r"^encoder\.(\d+)\.", lambda m: f"torch_encoder.encoder_transformer_block_{int(m[1]) + 1}."),
    (r"^decoder\.(\d+)\.", lambda m: f"torch_decoder.decoder_transformer_block_{int(m[1]) + 1}."),
    (r"^head\.(\d+)\.", lambda m: f"torch_decoder.decoder_dense_{int(m[1]) + 3}."),
    (r"^mu_out\.", "torch_decoder.decoder_out."),
    (r"^logvar_out\.", "torch_decoder.decoder_logvar_out."),
]


def to_reference_name(name: str) -> str:
    """lamfast parameter name -> the authors' (``encoder.0.dense_1.weight`` ->
    ``torch_encoder.encoder_transformer_block_1.dense_1.weight``)."""
    for pattern, repl in _REFERENCE_PREFIXES:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    raise ValueError(f"no reference name for parameter {name!r}")


def _load_weights(path: Path, model: LAM, config: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` on the CPU, checked against ``model`` (the architecture of
    ``config``): ValueError naming the file if it is truncated, not safetensors, or holds
    weights of another architecture."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); "
                         "truncated or corrupt? (rewrite the model with LAM.save)") from None
    ours = model.state_dict()
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    shapes = [k for k in ours if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or shapes:
        what = "; ".join(x for x in (
            f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
            f"other shapes for {shapes[:3]}" if shapes else "") if x)
        raise ValueError(f"{path}: weights do not fit the architecture in {config} ({what}); "
                         f"{config.name} and {path.name} come from different models")
    return state


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path.name} in {path.parent}")
    return path
