import numpy as np
import pytest

from lamfast import Normalizer, Vocab, sample_training, sample_training_reference
from lamfast.sampler import output_weights
from lamfast.vocab import PAPER_TOKENS

COLS = list(PAPER_TOKENS)
VOCAB = Vocab.paper()


def catalogue(rng, n, missing=0.4):
    """Real-looking missingness: XP blanked past a per-star relevant count, labels 1/3 absent."""
    values = rng.normal(size=(n, len(COLS))).astype(np.float32)
    relevant = rng.integers(0, 56, size=n)
    values[:, :55][np.arange(55)[None, :] >= relevant[:, None]] = np.nan
    values[:, 55:110][np.arange(55)[None, :] >= relevant[:, None]] = np.nan
    values[:, 110:][rng.random((n, 8)) < missing] = np.nan
    errors = np.abs(rng.normal(size=values.shape)).astype(np.float32)
    errors[rng.random(errors.shape) < 0.1] = np.nan
    return values, errors


CONFIGS = [
    dict(),
    dict(n_outputs=3, exclude_inputs=True),
    dict(context=5, max_blank=3, n_outputs=2),
    dict(context=1, max_blank=0),
    dict(context=200, max_blank=200, n_outputs=10),
    dict(outputs={"teff": 20, "logg": 20, "m_h": 20, "bp0": 1, "rp7": 3}, n_outputs=2, exclude_inputs=True),
    dict(n_outputs=0),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_matches_reference_exactly(rng, cfg):
    values, errors = catalogue(rng, 700)
    values[5] = np.nan  # a star with nothing
    norm = Normalizer.fit(values, COLS)
    for kw in (dict(errors=errors, normalizer=norm), dict()):
        a = sample_training(values, COLS, epoch=7, seed=3, **kw, **cfg)
        b = sample_training_reference(values, COLS, epoch=7, seed=3, **kw, **cfg)
        assert a == b


def test_invariants(rng):
    values, errors = catalogue(rng, 3000)
    ctx, nout = 20, 3
    b = sample_training(values, COLS, errors=errors, context=ctx, max_blank=15, n_outputs=nout,
                        exclude_inputs=True)
    w = output_weights(COLS)
    for i in range(len(values)):
        valid = np.flatnonzero(~np.isnan(values[i]))
        ins = b.token_id[b.cu_seqlens[i]:b.cu_seqlens[i + 1]] - 1  # column = id - 1 here
        outs = b.target_id[b.cu_targets[i]:b.cu_targets[i + 1]] - 1
        assert set(ins) <= set(valid) and len(set(ins)) == len(ins)
        assert len(ins) <= ctx and (len(ins) >= 1 or len(valid) == 0)
        assert np.all(np.diff(ins) > 0)  # column order
        np.testing.assert_array_equal(b.value[b.cu_seqlens[i]:b.cu_seqlens[i + 1]], values[i, ins])
        candidates = set(valid[w[valid] > 0]) - set(ins)
        assert set(outs) <= candidates and len(set(outs)) == len(outs)
        assert len(outs) == min(nout, len(candidates))
        np.testing.assert_array_equal(b.target_value[b.cu_targets[i]:b.cu_targets[i + 1]], values[i, outs])
        expected_err = np.nan_to_num(errors[i, outs], nan=0.0)
        np.testing.assert_array_equal(b.target_error[b.cu_targets[i]:b.cu_targets[i + 1]], expected_err)


def test_crop_and_blank_lengths_are_uniform(rng):
    # 40 present tokens, context 30, blank 0..min(20, 29): input length uniform on 10..30.
    values = rng.normal(size=(4000, 40)).astype(np.float32)
    cols = COLS[:40]
    counts = np.zeros(31, int)
    for epoch in range(5):
        b = sample_training(values, cols, epoch=epoch, context=30, max_blank=20)
        counts += np.bincount(b.seqlens(), minlength=31)
    assert counts[:10].sum() == 0
    expected = counts.sum() / 21
    assert np.all(np.abs(counts[10:] - expected) < 5 * np.sqrt(expected))


def test_short_stars_keep_at_least_one_input(rng):
    values = np.full((500, 10), np.nan, np.float32)
    values[:, 3] = rng.normal(size=500)
    b = sample_training(values, COLS[:10], max_blank=59)
    assert np.all(b.seqlens() == 1)


def test_every_token_equally_likely_to_be_kept(rng):
    values = rng.normal(size=(20000, 12)).astype(np.float32)
    b = sample_training(values, COLS[:12], context=6, max_blank=0)
    freq = np.bincount(b.token_id, minlength=13)[1:]  # each kept with probability 1/2
    assert np.all(np.abs(freq - 10000) < 5 * np.sqrt(5000))


def test_output_distribution_uniform_and_weighted(rng):
    values = rng.normal(size=(30000, 6)).astype(np.float32)
    cols = ["bp0", "bp1", "jk", "teff", "logg", "bprp"]  # jk, bprp never outputs (paper)
    b = sample_training(values, cols, max_blank=0)
    freq = np.bincount(b.target_id, minlength=119)
    assert freq[[113, 111]].sum() == 0
    for tid in (1, 2, 114, 115):
        assert abs(freq[tid] - 7500) < 5 * np.sqrt(7500 * 0.75)
    b = sample_training(values, cols, outputs={"teff": 3, "bp0": 1})
    freq = np.bincount(b.target_id, minlength=119)
    assert abs(freq[114] - 22500) < 5 * np.sqrt(30000 * 0.75 * 0.25)
    assert freq[114] + freq[1] == 30000


def test_deterministic_and_epoch_dependent(rng):
    values, errors = catalogue(rng, 2000)
    a = sample_training(values, COLS, errors=errors, epoch=1, seed=9)
    assert a == sample_training(values, COLS, errors=errors, epoch=1, seed=9)
    assert not np.array_equal(a.token_id, sample_training(values, COLS, errors=errors, epoch=2, seed=9).token_id)
    assert not np.array_equal(a.token_id, sample_training(values, COLS, errors=errors, epoch=1, seed=8).token_id)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_independent_of_threads_chunks_and_order(rng, threads):
    values, errors = catalogue(rng, 6000)
    whole = sample_training(values, COLS, errors=errors, epoch=4, n_outputs=2, threads=1)
    ids = np.arange(len(values))
    parts = [sample_training(values[s], COLS, errors=errors[s], epoch=4, n_outputs=2,
                             star_ids=ids[s], threads=threads)
             for s in (slice(0, 1234), slice(1234, 6000))]
    np.testing.assert_array_equal(np.concatenate([p.token_id for p in parts]), whole.token_id)
    np.testing.assert_array_equal(np.concatenate([p.target_id for p in parts]), whole.target_id)
    perm = rng.permutation(len(values))
    shuffled = sample_training(values[perm], COLS, errors=errors[perm], epoch=4, n_outputs=2,
                               star_ids=ids[perm], threads=threads)
    i = 17
    j = int(np.flatnonzero(perm == i)[0])
    np.testing.assert_array_equal(shuffled.token_id[shuffled.cu_seqlens[j]:shuffled.cu_seqlens[j + 1]],
                                  whole.token_id[whole.cu_seqlens[i]:whole.cu_seqlens[i + 1]])


def test_bad_input(rng):
    values, errors = catalogue(rng, 10)
    values[6, 113] = np.inf
    with pytest.raises(ValueError, match=r"column 'teff', row 6"):
        sample_training(values, COLS)
    values[6, 113] = 1.0
    with pytest.raises(ValueError, match="output token 'vsini' is not among the columns"):
        sample_training(values, COLS, outputs=["vsini"])
    with pytest.raises(ValueError, match="non-negative int"):
        sample_training(values, COLS, outputs={"teff": -1})
    with pytest.raises(ValueError, match="star_ids"):
        sample_training(values, COLS, star_ids=np.arange(3))
    with pytest.raises(ValueError, match="context"):
        sample_training(values, COLS, context=-1)
