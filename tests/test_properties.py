"""Properties of the C++ cores that must hold for any input (issue 21): the tokenizer keeps
every finite cell once, in its star, with its token id; mode="all" cross-matching is
symmetric; the sampler with exclude_inputs never requests one of the star's inputs;
labelling shards cover every unit exactly once. Fixed seed, a few seconds each
(LAMFAST_FUZZ_EXAMPLES raises the example count, as in tests/test_fuzz.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lamfast.label import shard_units
from lamfast.sampler import sample_training
from lamfast.tokenizer import tokenize
from lamfast.vocab import Vocab
from lamfast.xmatch import match

TOKENS = Vocab.paper().tokens
LONG = int(os.environ.get("LAMFAST_FUZZ_EXAMPLES", "0"))


def props(short: int):
    return settings(max_examples=LONG or short, derandomize=not LONG, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))


@st.composite
def finite_tables(draw):
    """float32 [N, V] with NaN holes (whole empty rows too), no infinities."""
    n = draw(st.integers(1, 30))
    v = draw(st.sampled_from([1, 63, 64, 65, 118]) | st.integers(1, 118))
    columns = list(draw(st.permutations(TOKENS)))[:v]
    el = st.floats(width=32, allow_infinity=False) | st.just(np.nan)
    values = draw(hnp.arrays(np.float32, (n, v), elements=el))
    holes = draw(hnp.arrays(np.bool_, (n, v)))
    values[holes] = np.nan
    return values, columns


@props(150)
@given(table=finite_tables(), threads=st.sampled_from([1, 2, 4]))
def test_tokenize_keeps_every_finite_value_once_in_its_star(table, threads):
    values, columns = table
    ids = Vocab.paper().ids(columns)
    b = tokenize(values, columns, threads=threads)
    cu = b.cu_seqlens
    assert cu[0] == 0 and np.all(np.diff(cu) >= 0) and cu[-1] == len(b.token_id)
    for i in range(len(values)):
        present = np.flatnonzero(~np.isnan(values[i]))  # column order
        got_id, got_value = b.token_id[cu[i]:cu[i + 1]], b.value[cu[i]:cu[i + 1]]
        np.testing.assert_array_equal(got_id, ids[present])
        np.testing.assert_array_equal(got_value, values[i, present])  # exact, -0.0 too
        assert np.array_equal(np.signbit(got_value), np.signbit(values[i, present]))
    assert len(b.token_id) == np.count_nonzero(~np.isnan(values))


@props(150)
@given(table=finite_tables(), context=st.integers(1, 130), max_blank=st.integers(0, 130),
       n_outputs=st.integers(0, 130), seed=st.integers(0, 2**64 - 1),
       weights=st.lists(st.integers(0, 3), min_size=118, max_size=118),
       threads=st.sampled_from([1, 3]))
def test_sampler_never_requests_an_input_with_exclude_inputs(table, context, max_blank,
                                                            n_outputs, seed, weights, threads):
    values, columns = table
    ids = Vocab.paper().ids(columns)
    outputs = dict(zip(columns, weights))
    b = sample_training(values, columns, context=context, max_blank=max_blank,
                        n_outputs=n_outputs, outputs=outputs, exclude_inputs=True, seed=seed,
                        threads=threads)
    ci, ct = b.cu_seqlens, b.cu_targets
    for i in range(len(values)):
        present = set(ids[~np.isnan(values[i])].tolist())
        inputs = b.token_id[ci[i]:ci[i + 1]].tolist()
        targets = b.target_id[ct[i]:ct[i + 1]].tolist()
        assert set(inputs) <= present and len(set(inputs)) == len(inputs)
        assert len(inputs) <= context and (len(inputs) >= 1 or not present)
        assert not set(inputs) & set(targets)
        assert len(set(targets)) == len(targets) <= n_outputs
        eligible = {ids[c] for c, w in enumerate(weights[:len(columns)]) if w > 0} & present
        assert set(targets) <= eligible - set(inputs)
        assert len(targets) == min(n_outputs, len(eligible - set(inputs)))


RA = st.sampled_from([0.0, 360.0, -360.0, 359.9999999, 1e-9, 180.0]) | st.floats(-360, 360)
DEC = st.sampled_from([90.0, -90.0, 89.9999999, -89.9999, 0.0]) | st.floats(-90, 90)


@st.composite
def sky(draw, max_n=30):
    n = draw(st.integers(0, max_n))
    ra = np.array(draw(st.lists(RA, min_size=n, max_size=n)), np.float64)
    dec = np.array(draw(st.lists(DEC, min_size=n, max_size=n)), np.float64)
    if n > 1 and draw(st.booleans()):  # duplicates
        pick = draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))
        ra, dec = ra[pick], dec[pick]
    return ra, dec


@props(150)
@given(a=sky(), b=sky(), radius=st.sampled_from([0.0, 1.0, 3600.0, 648000.0])
       | st.floats(0, 648000), threads=st.sampled_from([1, 2]))
def test_xmatch_all_is_symmetric(a, b, radius, threads):
    ab = match(*a, *b, radius, mode="all", threads=threads)
    ba = match(*b, *a, radius, mode="all", threads=threads)
    forward = sorted(zip(ab.idx1.tolist(), ab.idx2.tolist(), ab.sep_arcsec.tolist()))
    backward = sorted(zip(ba.idx2.tolist(), ba.idx1.tolist(), ba.sep_arcsec.tolist()))
    assert forward == backward  # same pairs and bit-identical separations


@props(300)
@given(n_units=st.integers(0, 500), n_jobs=st.integers(1, 600))
def test_shards_cover_every_unit_exactly_once(n_units, n_jobs):
    shards = [shard_units(n_units, (k, n_jobs)) for k in range(n_jobs)]
    flat = [u for s in shards for u in s]
    assert sorted(flat) == list(range(n_units)) == shard_units(n_units, None)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced


@pytest.mark.parametrize("shard", [(-1, 4), (4, 4), (0, 0), (1, -2), ("a", 2)])
def test_shard_units_refuses_a_shard_outside_its_range(shard):
    with pytest.raises(ValueError, match="shard must be K/N"):
        shard_units(10, shard)
