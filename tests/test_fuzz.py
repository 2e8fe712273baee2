"""Hostile inputs for the C++ core (issue 21): mutated Gaia archive files for the XP text
parser, ragged NaN/inf tables for the tokenizer and the sampler, degenerate coordinates
for the cross-match. Each case either succeeds (and agrees with the numpy/Python
reference) or raises ValueError saying where; never a crash, a hang or another
exception. tools/sanitize.sh runs this file under AddressSanitizer + UBSan.

Short by default (fixed seed, a few seconds per test). A long run:

    LAMFAST_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_fuzz.py   # per test
    LAMFAST_FUZZ_EXAMPLES=20000 tools/sanitize.sh tests/test_fuzz.py     # sanitized

draws LAMFAST_FUZZ_EXAMPLES fresh random examples per test (LAMFAST_FUZZ_SEED fixes
them). Real archive rows seed the parser fuzz from ../shared/realdata/gaiaxpy_tests
(read there, never copied into the repository); those tests skip when it is absent, and a
synthetic file (write_xp_continuous) seeds the rest.
"""

from __future__ import annotations

import csv
import gzip
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lamfast import _core
from lamfast.io import XpContinuous, read_xp_continuous, write_xp_continuous
from lamfast.io.xp_archive import N_BASES, N_CORRELATIONS, read_xp_continuous_reference
from lamfast.sampler import sample_training, sample_training_reference
from lamfast.tokenizer import tokenize, tokenize_reference
from lamfast.vocab import Vocab
from lamfast.xmatch import match, match_reference, one_to_one

from conftest import REALDATA

LONG = int(os.environ.get("LAMFAST_FUZZ_EXAMPLES", "0"))
SANITIZED = os.environ.get("LAMFAST_SANITIZED") == "1"
HANG_S = 60.0 if SANITIZED else 20.0  # one example taking longer counts as a hang
TOKENS = Vocab.paper().tokens


def fuzz(short: int):
    """Hypothesis settings: `short` derandomized examples, or the long run's count."""
    common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
    if LONG:
        s = settings(max_examples=LONG, derandomize=False, **common)
        if os.environ.get("LAMFAST_FUZZ_SEED"):
            return lambda f: seed(int(os.environ["LAMFAST_FUZZ_SEED"]))(s(f))
        return s
    return settings(max_examples=short, derandomize=True, **common)


class Timer:
    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        took = time.monotonic() - self.t0
        assert took < HANG_S, f"took {took:.1f} s: a hang?"


def test_sanitized_core_is_the_one_loaded():
    """Under tools/sanitize.sh the tests must run the sanitized copy, not the tree's core."""
    if not SANITIZED:
        pytest.skip("LAMFAST_SANITIZED=1 only (tools/sanitize.sh)")
    repo = Path(__file__).resolve().parents[1]
    assert not Path(_core.__file__).resolve().is_relative_to(repo), _core.__file__


# ---- XP archive text: mutated files ----------------------------------------------------------

REAL_SEEDS = ["XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.ecsv",
              "XP_CONTINUOUS_RAW_with_missing_BP.csv", "18Sco-XP-spectra.csv"]

# Bytes that parsers trip over: delimiters, quotes, brackets, line ends, special numbers,
# numbers out of range, bad UTF-8, comments, empty arrays.
SPLICES = [b",", b'"', b"(", b")", b"[", b"]", b"\n", b"\r\n", b"\r", b" ", b"\t", b"",
           b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e999", b"-1e-999", b"4.9e-324",
           b"null", b"NULL", b"+-1", b"--1", b"+", b"-", b".", b"1e", b"e5", b"0x10", b"1_0",
           b"9223372036854775808", b"-9223372036854775809", b"2147483648", b"-2147483649",
           b"\x00", b"\xff\xfe", b"\xc3", b"\xc3\xa9", b"#", b"# %ECSV 1.0\n", b'""', b",,",
           b"(,)", b"()", b"[]", b"(1)", b"[1,,2]", b'"(1, 2"', b"1" * 400, b"\n\n\n"]


class Blob(bytes):
    """Bytes with a short repr, so that a failing example prints readably; the failing
    file itself is kept (see _keep)."""

    def __repr__(self):
        import hashlib
        return f"<{len(self)} bytes, sha1 {hashlib.sha1(self).hexdigest()[:12]}>"


class Seeds(dict):
    def __repr__(self):
        return f"<seed files {sorted(self)}>"


CRASH_DIR = Path(os.environ.get("LAMFAST_FUZZ_CRASHES", Path(tempfile.gettempdir()) / "lamfast-fuzz-failures"))


def _keep(path: Path) -> Path:
    """Copy a failing input where it survives the run, and say where."""
    CRASH_DIR.mkdir(parents=True, exist_ok=True)
    kept = CRASH_DIR / f"{abs(hash(path.read_bytes())):x}-{path.name}"
    kept.write_bytes(path.read_bytes())
    return kept


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


@st.composite
def mutations(draw, data: bytes, header_bytes: int) -> bytes:
    """1-6 edits: byte splices and flips anywhere (often in the header), and line edits
    (drop, duplicate, swap, truncate), then maybe a cut at any byte."""
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["splice", "splice", "delete", "flip", "drop_line",
                                   "dup_line", "swap_lines", "truncate_line"]))
        if op in ("splice", "delete", "flip"):
            in_header = header_bytes > 0 and draw(st.booleans())
            hi = min(header_bytes, len(data)) if in_header else len(data)  # earlier edits may cut the header
            at = draw(st.integers(0, max(hi, 1) - 1)) if data else 0
            if op == "splice":
                what = draw(st.sampled_from(SPLICES) | st.binary(max_size=8))
                cut = draw(st.integers(0, 3))  # bytes it replaces
                data = data[:at] + what + data[at + cut:]
            elif op == "delete":
                data = data[:at] + data[at + draw(st.integers(1, 64)):]
            elif data:
                data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
        else:
            lines = _lines(data)
            i = draw(st.integers(0, len(lines) - 1))
            if op == "drop_line":
                del lines[i]
            elif op == "dup_line":
                lines.insert(i, lines[i])
            elif op == "swap_lines":
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = lines[i][:draw(st.integers(0, max(len(lines[i]) - 1, 0)))]
            data = b"".join(lines)
    if draw(st.integers(0, 4)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return Blob(data)


@st.composite
def containers(draw, data: bytes) -> tuple[bytes, bool]:
    """The bytes as stored: plain, or gzipped (maybe truncated or with a flipped byte)."""
    if not draw(st.booleans()):
        return Blob(data), False
    z = gzip.compress(data, compresslevel=1, mtime=0)
    how = draw(st.sampled_from(["ok", "ok", "truncate", "flip", "trailing"]))
    if how == "truncate":
        z = z[:draw(st.integers(0, len(z) - 1))]
    elif how == "flip":
        at = draw(st.integers(0, len(z) - 1))
        z = z[:at] + bytes([z[at] ^ 0x10]) + z[at + 1:]
    elif how == "trailing":
        z += draw(st.sampled_from([b"\x00", b"garbage", gzip.compress(b"1,2\n")]))
    return Blob(z), True


def _header_bytes(data: bytes) -> int:
    """Bytes up to the names line (inclusive), where header mutations go."""
    at = 0
    for line in _lines(data):
        at += len(line)
        if line.strip() and not line.startswith(b"#"):
            return at
    return len(data)


def check_read(path: Path, differential: bool, **kw) -> XpContinuous | None:
    """read_xp_continuous either parses (consistent arrays, equal to the reference reader's
    when that one parses too) or raises ValueError naming the file."""
    with Timer():
        try:
            xp = read_xp_continuous(path, **kw)
        except ValueError as e:
            assert str(path) in str(e), f"error does not name the file: {e!r}"
            return None
    n = len(xp.source_id)
    for name in ("bp_coefficients", "rp_coefficients", "bp_coefficient_errors",
                 "rp_coefficient_errors"):
        assert getattr(xp, name).shape == (n, N_BASES), name
    if kw.get("correlations"):
        assert xp.bp_coefficient_correlations.shape == (n, N_CORRELATIONS)
    if differential:
        try:
            ref = read_xp_continuous_reference(path, correlations=kw.get("correlations", False),
                                               blank_irrelevant=kw.get("blank_irrelevant", True))
        except (ValueError, csv.Error):  # the csv module is laxer/stricter about quotes
            return xp  # and line ends (csv.Error: a bug of the reference, reported)
        _assert_same_xp(xp, ref)
    return xp


def _assert_same_xp(a: XpContinuous, b: XpContinuous):
    for name in ("source_id", "bp_coefficients", "rp_coefficients", "bp_coefficient_errors",
                 "rp_coefficient_errors", "bp_n_relevant_bases", "rp_n_relevant_bases",
                 "bp_standard_deviation", "rp_standard_deviation",
                 "bp_coefficient_correlations", "rp_coefficient_correlations"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert x.shape == y.shape and np.array_equal(x, y, equal_nan=True), name


def _fuzz_file(data: bytes, draw, folder: Path, suffix: str):
    stored, gz = draw(containers(data))
    path = folder / ("fuzz" + suffix + (".gz" if gz else ""))
    path.write_bytes(stored)
    kw = dict(correlations=draw(st.booleans()), threads=draw(st.sampled_from([1, 2, 3])),
              chunk_bytes=draw(st.sampled_from([1, 97, 4096, 8 << 20])),
              blank_irrelevant=draw(st.booleans()))
    try:
        check_read(path, differential=kw["chunk_bytes"] > 1, **kw)
    except BaseException as e:
        e.add_note(f"input kept as {_keep(path)}; read with {kw}")
        raise


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def real_seeds() -> dict[str, bytes]:
    d = REALDATA / "gaiaxpy_tests"
    if not d.is_dir():
        pytest.skip(f"real archive rows not present ({d}); the parser fuzz seeds from them")
    return Seeds({name: (d / name).read_bytes() for name in REAL_SEEDS
                  if (d / name).is_file()})


@fuzz(short=40)
@given(data=st.data())
def test_real_files_mutated(real_seeds, folder, data):
    name = data.draw(st.sampled_from(sorted(real_seeds)))
    raw = real_seeds[name]
    mutated = data.draw(mutations(raw, _header_bytes(raw)))
    _fuzz_file(mutated, data.draw, folder, Path(name).suffix)


@pytest.fixture(scope="module")
def synthetic_seeds(tmp_path_factory) -> dict[str, bytes]:
    """Small archive-like files (3 stars, one band missing, extras) in both layouts."""
    rng = np.random.default_rng(21)
    n = 3
    coef = rng.normal(size=(2, n, N_BASES)) * 100
    err = np.abs(coef * 0.1).astype(np.float32)
    corr = rng.uniform(-1, 1, size=(2, n, N_CORRELATIONS)).astype(np.float32)
    coef[0, 1], err[0, 1], corr[0, 1] = np.nan, np.nan, np.nan
    n_rel = np.array([[55, -1, 40], [55, 55, 12]], np.int32)
    std = rng.uniform(0.8, 2, size=(2, n)).astype(np.float32)
    xp = XpContinuous(np.array([1, 2**62, 3], np.int64), coef[0], coef[1], err[0], err[1],
                      n_rel[0], n_rel[1], std[0], std[1], corr[0], corr[1],
                      {"phot_g_mean_mag": np.array([12.5, np.nan, 20.0])})
    d = tmp_path_factory.mktemp("seeds")
    out = Seeds()
    for fmt in ("csv", "ecsv"):
        write_xp_continuous(xp, d / f"s.{fmt}")
        out[fmt] = (d / f"s.{fmt}").read_bytes()
    return out


@fuzz(short=60)
@given(data=st.data())
def test_synthetic_files_mutated(synthetic_seeds, folder, data):
    fmt = data.draw(st.sampled_from(sorted(synthetic_seeds)))
    raw = synthetic_seeds[fmt]
    _fuzz_file(data.draw(mutations(raw, _header_bytes(raw))), data.draw, folder, "." + fmt)


# The core directly: any bytes, any valid field plan (what a header can map to).
_FIELD = st.tuples(st.integers(0, 7), st.integers(0, 1), st.integers(0, 2))


@fuzz(short=200)
@given(data=st.data(), fields=st.lists(_FIELD, min_size=1, max_size=8),
       delimiter=st.sampled_from([",", " ", "\t", '"', "("]), correlations=st.booleans(),
       threads=st.sampled_from([1, 2, 4]))
@example(data=None, fields=[(2, 0, 0)], delimiter=",", correlations=False, threads=1)
def test_core_parser_any_bytes(synthetic_seeds, data, fields, delimiter, correlations, threads):
    if data is None:  # the @example: an array cell cut at every byte
        row = synthetic_seeds["csv"].splitlines()[1]
        cell = row[row.index(b'"(') + 1:row.index(b')"') + 1]
        buffers = [cell[:i] for i in range(len(cell) + 1)]
    else:
        raw = synthetic_seeds[data.draw(st.sampled_from(sorted(synthetic_seeds)))]
        body = raw[_header_bytes(raw):]
        buffers = [data.draw(mutations(body, 0) | st.binary(max_size=300).map(Blob))]
    n_extra = 3
    kinds = np.array([k if (k != 4 or correlations) else 0 for k, _, _ in fields], np.int32)
    bands = np.array([b for _, b, _ in fields], np.int32)
    indices = np.array([x for _, _, x in fields], np.int32)
    for buf in buffers:
        with Timer():
            err, arrays = _core.parse_xp_text(buf, kinds, bands, indices, delimiter,
                                              correlations, n_extra, threads)
        if err is None:
            n = len(arrays["line"])
            assert arrays["bp_coefficients"].shape == (n, N_BASES)
            assert arrays["extra"].shape == (n, n_extra)
            assert n <= arrays["n_lines"] <= buf.count(b"\n") + 1
        else:
            row, line, field, code, found, text = err
            assert 0 <= row <= line < buf.count(b"\n") + 1
            assert -1 <= field < len(fields) and 1 <= code <= 6 and len(text) <= 51


# ---- tokenizer and sampler: ragged tables ----------------------------------------------------

SPECIAL_F32 = [np.nan, np.nan, np.nan, 0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 3.4028235e38,
               -3.4028235e38, 1e-45, 1.17549435e-38, 65504.0]


@st.composite
def tables(draw, allow_inf: bool = True):
    """(values, errors or None, columns): N 1-40 stars, V 1-118 columns (across the
    64-bit mask words), whole-NaN rows and columns, special floats, maybe an inf."""
    n = draw(st.integers(1, 40))
    v = draw(st.sampled_from([1, 2, 3, 63, 64, 65, 100, 118]) | st.integers(1, 118))
    columns = list(draw(st.permutations(TOKENS)))[:v]
    elements = st.sampled_from(SPECIAL_F32) | st.floats(width=32, allow_nan=True,
                                                       allow_infinity=allow_inf)
    if not allow_inf:
        elements = elements.filter(lambda x: not np.isinf(x))
    values = draw(hnp.arrays(np.float32, (n, v), elements=elements))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values[rng.random((n, v)) >= density] = np.nan if density < 1 else values[0, 0]
    for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
        values[i] = np.nan  # empty stars
    errors = None
    if draw(st.booleans()):
        errors = draw(hnp.arrays(np.float32, (n, v), elements=elements))
    return values, errors, columns


def _same_outcome(fast, slow):
    """Both raise the same ValueError, or both return equal batches."""
    try:
        want = slow()
    except ValueError as e:
        with pytest.raises(ValueError) as got:
            fast()
        assert str(got.value) == str(e)
        return None
    got = fast()
    for name in want.__dataclass_fields__:
        x, y = getattr(got, name), getattr(want, name)
        if isinstance(y, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
        else:
            assert x == y, name
    return got


@fuzz(short=150)
@given(table=tables(), max_tokens=st.none() | st.integers(0, 130),
       threads=st.sampled_from([1, 2, 5]))
def test_tokenize_ragged(table, max_tokens, threads):
    values, errors, columns = table
    with Timer():
        _same_outcome(
            lambda: tokenize(values, columns, errors=errors, max_tokens=max_tokens,
                             threads=threads),
            lambda: tokenize_reference(values, columns, errors=errors, max_tokens=max_tokens))


@fuzz(short=150)
@given(table=tables(), context=st.integers(0, 130) | st.just(2**40),
       max_blank=st.integers(0, 130) | st.just(2**40),
       n_outputs=st.integers(0, 5) | st.integers(0, 200) | st.just(2**40),
       exclude_inputs=st.booleans(), seed_=st.integers(0, 2**64 - 1), epoch=st.integers(0, 9),
       weights=st.none() | st.lists(st.integers(0, 3), min_size=118, max_size=118),
       threads=st.sampled_from([1, 2, 5]))
def test_sample_ragged(table, context, max_blank, n_outputs, exclude_inputs, seed_, epoch,
                       weights, threads):
    values, errors, columns = table
    outputs = None if weights is None else dict(zip(columns, weights))
    kw = dict(errors=errors, context=context, max_blank=max_blank, n_outputs=n_outputs,
              exclude_inputs=exclude_inputs, seed=seed_, epoch=epoch, outputs=outputs)
    with Timer():
        _same_outcome(lambda: sample_training(values, columns, threads=threads, **kw),
                      lambda: sample_training_reference(values, columns, **kw))


def test_cu_seqlens_refuse_int32_overflow():
    """cu_seqlens are int32 by design: a batch past 2^31-1 tokens raises, never wraps."""
    counts = np.array([2**30, 2**30 - 1], np.int32)
    np.testing.assert_array_equal(_core._cu_seqlens(counts), [0, 2**30, 2**31 - 1])
    with pytest.raises(OverflowError, match="2\\^31-1 tokens.*split the catalogue"):
        _core._cu_seqlens(np.array([2**30, 2**30], np.int32))
    with pytest.raises(OverflowError):
        _core._cu_seqlens(np.full(5, 2**31 - 1, np.int32))
    assert _core._cu_seqlens(np.zeros(0, np.int32)).tolist() == [0]


# ---- cross-match: degenerate coordinates -----------------------------------------------------

RA_SPECIAL = [0.0, 360.0, -360.0, 359.99999999999994, 1e-12, -1e-12, 180.0, 90.0, -0.0,
              359.9999, 0.0001]
DEC_SPECIAL = [90.0, -90.0, 89.99999999, -89.99999999, 0.0, 1e-12, 89.9997, -89.9997, 45.0]


@st.composite
def catalogue(draw, max_n=25, bad=True):
    n = draw(st.integers(0, max_n))
    ra_el = st.sampled_from(RA_SPECIAL) | st.floats(-360, 360)
    dec_el = st.sampled_from(DEC_SPECIAL) | st.floats(-90, 90)
    ra = np.array(draw(st.lists(ra_el, min_size=n, max_size=n)), np.float64)
    dec = np.array(draw(st.lists(dec_el, min_size=n, max_size=n)), np.float64)
    if n and draw(st.booleans()):  # duplicates and near-duplicates
        src = draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))
        jitter = draw(st.sampled_from([0.0, 1e-10, 1e-6]))
        ra, dec = ra[src] + jitter * (np.arange(n) % 2), dec[src]
        ra = np.clip(ra, -360, 360)
    if bad and n and draw(st.integers(0, 5)) == 0:  # a bad value: NaN, inf, out of range
        which = draw(st.sampled_from(["ra", "dec"]))
        (ra if which == "ra" else dec)[draw(st.integers(0, n - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 360.5, 91.0, -90.0000001]))
    return ra, dec


RADII = st.sampled_from([0.0, 1e-6, 0.5, 3600.0, 36000.0, 648000.0]) | st.floats(0, 648000)


def _pairs(m) -> set:
    return set(zip(m.idx1.tolist(), m.idx2.tolist()))


EPS_ARCSEC = 1e-6  # far above the rounding of either side, far below any real radius


def _nudged(radius_arcsec: float, sign: int) -> float:
    """The radius moved by a few units of rounding of the chord^2 that decides a pair:
    1e-14 + 1e-9 relative in chord^2 (the separation is ill-conditioned near 180 deg,
    where one ulp of chord^2 = 4 is milliarcseconds)."""
    r = min(radius_arcsec / 206264.80624709636, np.pi)
    c2 = (2 * np.sin(r / 2)) ** 2
    c2 = min(max(c2 + sign * (1e-14 + 1e-9 * c2), 0.0), 4.0)
    return float(min(2 * np.arcsin(np.sqrt(c2) / 2) * 206264.80624709636, 648000.0))


def _check_against_reference(ra1, dec1, ra2, dec2, radius, mode, k, threads, kw):
    """The C++ pairs within the radius agree with the brute-force reference up to pairs
    at the radius itself (sandwich: rounding may move a pair across the boundary by an
    ulp), "nearest" is the start of each row's "all" list, "best" is one_to_one of "all"."""
    def fast(r, **extra):
        return match(ra1, dec1, ra2, dec2, r, threads=threads, **kw, **extra)

    def slow(r):
        return match_reference(ra1, dec1, ra2, dec2, r, mode="all", **kw)

    lo, hi = _nudged(radius, -1), _nudged(radius, +1)
    got = fast(radius, mode="all")
    # The upper side cannot widen past 180 deg, where exact antipodes sit at chord^2 = 4
    # up to rounding on either side: there only the lower side is checked.
    wide = hi < 648000.0
    assert _pairs(slow(lo)) <= _pairs(got)
    if wide:
        assert _pairs(got) <= _pairs(slow(hi))
    # (At radius 0 the lower side is exact on the C++ side only: it leaves an unmoved row
    # bit for bit, the reference renormalises it.)
    if lo > 0.0:  # radius far above the rounding of chord^2
        assert _pairs(fast(lo, mode="all")) <= _pairs(slow(radius))
    if wide:
        assert _pairs(slow(radius)) <= _pairs(fast(hi, mode="all"))
    assert np.all(np.diff(got.idx1) >= 0) and np.all(got.sep_arcsec <= hi + EPS_ARCSEC)
    if mode == "nearest":
        near = fast(radius, k=k)
        want_idx2 = np.full((len(ra1), k), -1)
        for i in range(len(ra1)):
            row = got.idx2[got.idx1 == i][:k]
            want_idx2[i, :len(row)] = row
        np.testing.assert_array_equal(near.idx2.reshape(-1, k), want_idx2)
    elif mode == "best":
        best = fast(radius, mode="best")
        assert _pairs(best) == _pairs(one_to_one(got))


@fuzz(short=150)
@given(c1=catalogue(), c2=catalogue(), radius=RADII,
       mode_k=st.sampled_from([("nearest", 1), ("nearest", 3), ("all", 1), ("best", 1)]),
       motion=st.none() | st.tuples(st.sampled_from([0.0, 1e3, -5e5, np.nan, np.inf, 1e20]),
                                    st.sampled_from([0.0, 1e3, np.nan, -np.inf]),
                                    st.sampled_from([0.0, 16.0, -1e6])),
       threads=st.sampled_from([1, 3]))
def test_xmatch_degenerate(c1, c2, radius, mode_k, motion, threads):
    (ra1, dec1), (ra2, dec2) = c1, c2
    mode, k = mode_k
    kw = {}
    if motion is not None:
        pmra, pmdec, dt = motion
        kw.update(pmra1=np.full(len(ra1), pmra), pmdec1=np.full(len(ra1), pmdec),
                  epoch1=2016.0, epoch2=2016.0 + dt)
    if motion is not None and len(ra1) and (np.isinf(pmra) or np.isinf(pmdec) or
                                            max(abs(pmra * dt), abs(pmdec * dt)) > 1e15):
        # The core refuses infinite or absurd proper motions (the reference does not check).
        with pytest.raises(ValueError, match=r"(ra|dec|pmra|pmdec)[12]\[\d+\] = .* is "):
            match(ra1, dec1, ra2, dec2, radius, threads=threads, **kw)
        return
    with Timer(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            match_reference(ra1, dec1, ra2, dec2, radius, **kw)
        except ValueError:
            with pytest.raises(ValueError, match=r"(ra|dec)[12]\[\d+\] = .* is not a finite"):
                match(ra1, dec1, ra2, dec2, radius, threads=threads, **kw)
            return
        try:
            _check_against_reference(ra1, dec1, ra2, dec2, radius, mode, k, threads, kw)
        except AssertionError as e:  # numpy's repr of the arrays rounds: give them exactly
            e.add_note("exactly: " + repr({n: [float(x) for x in a] for n, a in
                                          (("ra1", ra1), ("dec1", dec1), ("ra2", ra2),
                                           ("dec2", dec2))}) + f" radius={radius!r}")
            raise
