"""Token vocabulary: names <-> integer ids, id 0 reserved for padding.

The default is the paper's 118 tokens (Leung & Bovy 2024): ``bp0..bp54`` = 1..55,
``rp0..rp54`` = 56..110, then ``bprp jh jk teff logg m_h logebv g_fakemag`` = 111..118.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PAD = "<pad>"
XP_BP = tuple(f"bp{i}" for i in range(55))
XP_RP = tuple(f"rp{i}" for i in range(55))
XP = XP_BP + XP_RP
PHOTOMETRY = ("bprp", "jh", "jk")
LABELS = ("teff", "logg", "m_h")
# The paper's headline task inputs: the first 30 BP and RP coefficients and three colours.
HEADLINE_INPUTS = XP_BP[:30] + XP_RP[:30] + ("jh", "jk", "bprp")
PAPER_TOKENS = XP + PHOTOMETRY + LABELS + ("logebv", "g_fakemag")
# The paper never requests these as outputs (they are inputs only).
PAPER_NON_OUTPUTS = ("bprp", "jk")


def by_information(tokens: Iterable[str]) -> list[str]:
    """``tokens`` reordered so that a cut to the first K present values keeps the most
    informative: every scalar (colours, labels, extinction, ...) first, in the given
    order, then XP coefficients by rising order, BP before RP (bp0 rp0 bp1 rp1 ...).

    A model sees at most its context length (64) of a star's values, the first ones in
    column order; in vocabulary order a full XP star would lose its colours and most of
    RP (bp0..54, rp0..8), in this order it keeps them (8 scalars, bp0..27, rp0..27).
    """
    tokens = list(tokens)
    xp_rank = {name: (i, 0) for i, name in enumerate(XP_BP)}
    xp_rank.update({name: (i, 1) for i, name in enumerate(XP_RP)})
    scalars = [t for t in tokens if t not in xp_rank]
    return scalars + sorted((t for t in tokens if t in xp_rank), key=xp_rank.__getitem__)


class Vocab:
    """Ordered token names; ``id(name)`` is the position + 1 (0 = padding).

    Extending appends new names, so ids of existing tokens never change and a model
    trained on an older vocabulary keeps its embedding rows.
    """

    def __init__(self, tokens: Iterable[str] = PAPER_TOKENS):
        self.tokens: tuple[str, ...] = tuple(tokens)
        if len(set(self.tokens)) != len(self.tokens):
            dupes = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ValueError(f"duplicate token names in vocabulary: {dupes}")
        if PAD in self.tokens:
            raise ValueError(f"{PAD!r} is reserved for id 0")
        self._ids = {name: i + 1 for i, name in enumerate(self.tokens)}

    @classmethod
    def paper(cls) -> Vocab:
        return cls(PAPER_TOKENS)

    def __len__(self) -> int:
        """Number of ids including padding (119 for the paper)."""
        return len(self.tokens) + 1

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self.tokens)} tokens: {', '.join(self.tokens[:3])}, ...)"

    def extend(self, names: Iterable[str]) -> Vocab:
        """A new vocabulary with ``names`` appended (names already present are kept)."""
        return Vocab(self.tokens + tuple(n for n in dict.fromkeys(names) if n not in self._ids))

    def id(self, name: str) -> int:
        try:
            return self._ids[name]
        except KeyError:
            raise ValueError(f"unknown column {name!r}: not a token of this vocabulary "
                             f"({len(self.tokens)} tokens, e.g. {', '.join(self.tokens[-8:])})") from None

    def ids(self, names: Sequence[str]) -> np.ndarray:
        """int32 [len(names)] ids; raises ValueError naming the first unknown column."""
        if isinstance(names, str):
            raise TypeError("columns must be a sequence of names, not one string")
        return np.array([self.id(n) for n in names], dtype=np.int32)

    def name(self, token_id: int) -> str:
        if token_id == 0:
            return PAD
        if not 0 < token_id <= len(self.tokens):
            raise ValueError(f"token id {token_id} outside 0..{len(self.tokens)}")
        return self.tokens[token_id - 1]

    def to_list(self) -> list[str]:
        return list(self.tokens)
