import numpy as np
import pytest

import lamfast
from lamfast import Normalizer, tokenize, tokenize_reference
from lamfast.vocab import PAPER_TOKENS


def random_table(rng, n, v, missing=0.4):
    values = rng.normal(size=(n, v)).astype(np.float32)
    values[rng.random((n, v)) < missing] = np.nan
    return values


@pytest.mark.parametrize("n, v, missing", [(1, 1, 0.0), (1, 1, 1.0), (7, 3, 0.5), (300, 118, 0.4),
                                           (257, 118, 0.95), (64, 118, 0.0)])
@pytest.mark.parametrize("max_tokens", [None, 0, 1, 2, 64])
def test_matches_reference(rng, n, v, missing, max_tokens):
    cols = PAPER_TOKENS[:v]
    values = random_table(rng, n, v, missing)
    errors = np.abs(random_table(rng, n, v, 0.1))
    a = tokenize(values, cols, errors=errors, max_tokens=max_tokens)
    b = tokenize_reference(values, cols, errors=errors, max_tokens=max_tokens)
    assert a == b
    assert a.cu_seqlens[0] == 0 and a.cu_seqlens[-1] == a.n_tokens and a.n_stars == n
    assert a.max_seqlen <= (v if max_tokens is None else max_tokens)


def test_contents_and_empty_stars():
    cols = ["jh", "teff", "bp3"]
    values = np.array([[0.5, np.nan, 0.01], [np.nan] * 3, [np.nan, 4800, np.nan]], np.float32)
    b = tokenize(values, cols)
    np.testing.assert_array_equal(b.cu_seqlens, [0, 2, 2, 3])  # empty star kept, not dropped
    np.testing.assert_array_equal(b.token_id, [112, 4, 114])   # column order within a star
    np.testing.assert_array_equal(b.value, np.float32([0.5, 0.01, 4800]))
    assert b.max_seqlen == 2 and b.error is None


def test_max_tokens_keeps_first_present_columns():
    cols = ["bp0", "bp1", "bp2", "bp3"]
    values = np.array([[np.nan, 1, 2, 3]], np.float32)
    b = tokenize(values, cols, max_tokens=2)
    np.testing.assert_array_equal(b.token_id, [2, 3])


def test_normalizer_and_errors_standardised(rng):
    cols = ["teff", "logg"]
    values = (rng.normal(size=(500, 2)) * [400, 1] + [5000, 3]).astype(np.float32)
    errors = np.abs(rng.normal(size=(500, 2)) * [50, 0.1]).astype(np.float32)
    norm = Normalizer.fit(values, cols)
    b = tokenize(values, cols, errors=errors, normalizer=norm)
    expected = norm.standardize(values, cols).ravel()
    np.testing.assert_array_equal(b.value, expected)
    np.testing.assert_allclose(b.error, (errors / norm.scale[[114, 115]]).ravel(), rtol=1e-6)
    assert tokenize_reference(values, cols, errors=errors, normalizer=norm) == b


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_thread_count_invariant(rng, threads):
    values = random_table(rng, 20_000, 20)  # > several 4096-row thread blocks
    cols = PAPER_TOKENS[:20]
    assert tokenize(values, cols, threads=threads, max_tokens=9) == \
        tokenize(values, cols, threads=1, max_tokens=9)


def test_thread_setting(monkeypatch):
    lamfast.set_num_threads(3)
    try:
        assert lamfast.get_num_threads() == 3
    finally:
        lamfast.set_num_threads(None)
    with pytest.raises(ValueError):
        lamfast.set_num_threads(0)


@pytest.mark.parametrize("fn", [tokenize, tokenize_reference])
def test_infinite_value_names_column_and_row(rng, fn):
    cols = ["jh", "jk", "teff"]
    values = random_table(rng, 10_000, 3, 0.2)
    values[7_321, 2] = -np.inf
    values[9_000, 0] = np.inf
    with pytest.raises(ValueError, match=r"column 'teff', row 7321"):
        fn(values, cols)


@pytest.mark.parametrize("fn", [tokenize, tokenize_reference])
def test_infinite_error_only_counts_where_value_present(rng, fn):
    cols = ["jh", "jk"]
    values = random_table(rng, 50, 2, 0.0)
    errors = np.abs(random_table(rng, 50, 2, 0.0))
    values[3, 1] = np.nan
    errors[3, 1] = np.inf  # error of a missing value: ignored
    fn(values, cols, errors=errors)
    errors[11, 0] = np.inf
    with pytest.raises(ValueError, match=r"infinite value in errors: column 'jh', row 11"):
        fn(values, cols, errors=errors)


@pytest.mark.parametrize("bad, match", [
    (lambda v: v.astype(np.float64), "must be float32, got float64"),
    (lambda v: np.nan_to_num(v).astype(np.int32), "must be float32, got int32"),
    (lambda v: v[:, 0], "must be 2-D"),
    (lambda v: v[:0], r"no rows \(N = 0\)"),
    (lambda v: v[:, :2], "has 2 columns but 3 names"),
])
def test_bad_arrays(rng, bad, match):
    values = random_table(rng, 4, 3)
    with pytest.raises(ValueError, match=match):
        tokenize(bad(values), ["jh", "jk", "teff"])


def test_bad_columns_and_options(rng):
    values = random_table(rng, 4, 3)
    with pytest.raises(ValueError, match="unknown column 'Teff'"):
        tokenize(values, ["jh", "jk", "Teff"])
    with pytest.raises(ValueError, match="duplicate columns"):
        tokenize(values, ["jh", "jh", "teff"])
    with pytest.raises(ValueError, match="no columns"):
        tokenize(values[:, :0], [])
    with pytest.raises(ValueError, match="errors shape"):
        tokenize(values, ["jh", "jk", "teff"], errors=values[:2])
    with pytest.raises(ValueError, match="max_tokens"):
        tokenize(values, ["jh", "jk", "teff"], max_tokens=-1)
    with pytest.raises(TypeError, match="numpy array"):
        tokenize(values.tolist(), ["jh", "jk", "teff"])


def test_non_contiguous_input(rng):
    values = random_table(rng, 40, 6)
    view = values[::2, ::2]
    cols = ["jh", "jk", "teff"]
    assert tokenize(view, cols) == tokenize(np.ascontiguousarray(view), cols)


def test_to_torch_keeps_int32(rng):
    torch = pytest.importorskip("torch")
    b = tokenize(random_table(rng, 5, 3), ["jh", "jk", "teff"])
    t = b.to_torch()
    assert t["token_id"].dtype == torch.int32 and t["cu_seqlens"].dtype == torch.int32
    assert t["max_seqlen"] == b.max_seqlen
