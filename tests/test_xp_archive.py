import dataclasses
import gzip
import math
import shutil
from fractions import Fraction

import numpy as np
import pytest

from lamfast.io import (Catalog, XpContinuous, read_xp_continuous, read_xp_continuous_many,
                        read_xp_continuous_reference, write_xp_continuous, xp_catalog)
from lamfast.io.photometry import g_flux
from lamfast.io.xp_archive import N_BASES, N_CORRELATIONS

READERS = [read_xp_continuous, read_xp_continuous_reference]
ARRAY_FIELDS = [f.name for f in dataclasses.fields(XpContinuous) if f.name not in ("extra", "meta")]


def assert_same(a: XpContinuous, b: XpContinuous):
    """Bit-identical arrays and dtypes (NaN == NaN), extras included."""
    for name in ARRAY_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert type(x) is np.ndarray and type(y) is np.ndarray, name
        assert x.dtype == y.dtype and x.shape == y.shape, (name, x.dtype, y.dtype, x.shape, y.shape)
        assert np.array_equal(x, y, equal_nan=True), name
    assert list(a.extra) == list(b.extra)
    for k in a.extra:
        assert np.array_equal(a.extra[k], b.extra[k], equal_nan=True), k


def random_xp(rng, n, correlations=True, extra=()) -> XpContinuous:
    """Fresh archive-like rows: coefficients over many decades, some missing bands."""
    def band():
        coef = rng.normal(size=(n, N_BASES)) * 10.0 ** rng.uniform(-3, 6, size=(n, 1))
        err = (np.abs(coef) * rng.uniform(1e-3, 0.5, size=coef.shape)).astype(np.float32)
        corr = rng.uniform(-1, 1, size=(n, N_CORRELATIONS)).astype(np.float32)
        n_rel = rng.integers(1, N_BASES + 1, size=n).astype(np.int32)
        std = rng.uniform(0.8, 3.0, size=n).astype(np.float32)
        missing = rng.random(n) < 0.2
        coef[missing], err[missing], corr[missing] = np.nan, np.nan, np.nan
        n_rel[missing], std[missing] = -1, np.nan
        return coef, err, corr if correlations else None, n_rel, std

    (bc, be, bk, bn, bs), (rc, re, rk, rn, rs) = band(), band()
    ex = {}
    for name in extra:
        v = rng.uniform(3, 21, size=n)
        v[rng.random(n) < 0.3] = np.nan
        ex[name] = v
    ids = rng.integers(1, 2**62, size=n, dtype=np.int64)
    return XpContinuous(ids, bc, rc, be, re, bn, rn, bs, rs, bk, rk, ex)


# ---- real archive rows -------------------------------------------------------------------

def test_four_formats_identical(realdata, tmp_path):
    d = realdata / "gaiaxpy_tests"
    base = read_xp_continuous(d / "XP_CONTINUOUS_RAW.csv", correlations=True)
    assert base.source_id.tolist() == [5853498713190525696, 5762406957886626816]
    for name in ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.ecsv", "XP_CONTINUOUS_RAW.fits",
                 "XP_CONTINUOUS_RAW.xml"):
        gz = tmp_path / (name + ".gz")
        with open(d / name, "rb") as f, gzip.open(gz, "wb") as g:
            shutil.copyfileobj(f, g)
        for path in (d / name, gz):
            for read in READERS:
                assert_same(base, read(path, correlations=True))


def test_values_match_astropy(realdata):
    from astropy.table import Table

    path = realdata / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW.ecsv"
    xp = read_xp_continuous(path, correlations=True, blank_irrelevant=False)
    t = Table.read(path, format="ascii.ecsv")
    for band in ("bp", "rp"):
        for col in ("coefficients", "coefficient_errors", "coefficient_correlations"):
            want = np.stack([np.asarray(v) for v in t[f"{band}_{col}"]])
            got = getattr(xp, f"{band}_{col}")
            assert np.array_equal(got, want.astype(got.dtype)), (band, col)
        assert np.array_equal(getattr(xp, f"{band}_n_relevant_bases"), t[f"{band}_n_relevant_bases"])
        assert np.array_equal(getattr(xp, f"{band}_standard_deviation"),
                              np.asarray(t[f"{band}_standard_deviation"], np.float32))


def _missing_bp_variants(realdata, tmp_path):
    """The 3-star file with an empty BP band, re-written by astropy as ECSV, FITS (VLA)
    and VOTable (arraysize="*"), the empty band as zero-length arrays."""
    from astropy.table import Table

    csv = realdata / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
    t = Table.read(csv, format="ascii.csv")
    out = Table()
    for name in t.colnames:
        if name.endswith(("coefficients", "errors", "correlations")):
            dtype = np.float64 if name.endswith("coefficients") else np.float32
            cells = np.empty(len(t), object)
            for i, v in enumerate(t[name]):
                text = "" if v is np.ma.masked else str(v).strip("()")
                cells[i] = np.array(text.split(",") if text else [], np.float64).astype(dtype)
            out[name] = cells
        else:
            out[name] = t[name]
    paths = [csv]
    for suffix, fmt in (("ecsv", "ascii.ecsv"), ("fits", "fits"), ("xml", "votable")):
        paths.append(tmp_path / f"missing_bp.{suffix}")
        out.write(paths[-1], format=fmt)
    return paths


def test_missing_band_all_formats(realdata, tmp_path):
    paths = _missing_bp_variants(realdata, tmp_path)
    base = read_xp_continuous(paths[0], correlations=True)
    row = base.source_id.tolist().index(5405570973190252288)
    assert np.isnan(base.bp_coefficients[row]).all()
    assert np.isnan(base.bp_coefficient_errors[row]).all()
    assert np.isnan(base.bp_coefficient_correlations[row]).all()
    assert base.bp_n_relevant_bases[row] == -1 and np.isnan(base.bp_standard_deviation[row])
    assert base.rp_n_relevant_bases[row] == 47
    assert np.isfinite(base.rp_coefficients[row, :47]).all()
    for path in paths[1:]:
        for read in READERS:
            assert_same(base, read(path, correlations=True))


def test_blanking_beyond_relevant_bases(realdata):
    path = realdata / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv"
    kept = read_xp_continuous(path, blank_irrelevant=False)
    blanked = read_xp_continuous(path)
    assert np.isfinite(kept.bp_coefficients).all()
    for band in ("bp", "rp"):
        n_rel = getattr(kept, f"{band}_n_relevant_bases")
        assert (n_rel < N_BASES).all()  # faint stars: 3..22 relevant bases
        for field in ("coefficients", "coefficient_errors"):
            k, b = getattr(kept, f"{band}_{field}"), getattr(blanked, f"{band}_{field}")
            for i, m in enumerate(n_rel):
                assert np.array_equal(b[i, :m], k[i, :m])
                assert np.isnan(b[i, m:]).all()


def test_reduced_columns_and_extra(realdata):
    """GaiaXPy's 18 Sco file: no n_relevant_bases or standard deviation, has G."""
    path = realdata / "gaiaxpy_tests" / "18Sco-XP-spectra.csv"
    for read in READERS:
        xp = read(path, extra_columns=["phot_g_mean_mag"])
        assert xp.source_id.tolist() == [4345775217221821312]
        assert xp.bp_n_relevant_bases.tolist() == [-1] and np.isnan(xp.rp_standard_deviation).all()
        assert np.isfinite(xp.bp_coefficients).all()  # unknown relevance: nothing blanked
        assert xp.extra["phot_g_mean_mag"].tolist() == [5.327651]


# ---- fresh random files: C++ == reference == what was written ------------------------------

@pytest.mark.parametrize("n", [1, 7, 37])
@pytest.mark.parametrize("name", ["x.csv", "x.ecsv", "x.csv.gz", "x.ecsv.gz"])
def test_random_round_trip(rng, tmp_path, n, name):
    xp = random_xp(rng, n, extra=("phot_g_mean_mag",))
    path = tmp_path / name
    write_xp_continuous(xp, path)
    want = read_xp_continuous_reference(path, correlations=True, blank_irrelevant=False,
                                        extra_columns=["phot_g_mean_mag"])
    assert_same(xp, want)
    for threads in (1, 2, 3):
        for chunk_bytes in (1 << 20, 5000, 1):  # many chunks, lines longer than a chunk
            got = read_xp_continuous(path, correlations=True, blank_irrelevant=False,
                                     extra_columns=["phot_g_mean_mag"], threads=threads,
                                     chunk_bytes=chunk_bytes)
            assert_same(want, got)
    # without correlations (the fast path skips them) and with blanking
    got = read_xp_continuous(path, threads=2)
    ref = read_xp_continuous_reference(path)
    assert got.bp_coefficient_correlations is None
    assert_same(ref, got)
    mask = np.arange(N_BASES)[None] >= np.where(xp.bp_n_relevant_bases < 0, N_BASES,
                                                 xp.bp_n_relevant_bases)[:, None]
    assert np.isnan(got.bp_coefficients[mask]).all()
    assert np.array_equal(got.bp_coefficients[~mask], xp.bp_coefficients[~mask], equal_nan=True)


@pytest.mark.parametrize("short_first", [True, False])
@pytest.mark.parametrize("members", [1, 2])
def test_row_count_guess_off(rng, tmp_path, short_first, members):
    """The output arrays are sized from the first chunk's rows per byte (and the gzip
    trailer's size, only the last member's in a multi-member file): rows much longer
    after it make them grow, much shorter leave slack that is cut off. Same result."""
    n = int(rng.integers(150, 260))
    xp = random_xp(rng, n, correlations=False)
    short = np.arange(n) < n // 2 if short_first else np.arange(n) >= n // 2
    for b in ("bp", "rp"):   # both bands missing: a line of a few bytes
        getattr(xp, f"{b}_coefficients")[short] = np.nan
        getattr(xp, f"{b}_coefficient_errors")[short] = np.nan
        getattr(xp, f"{b}_n_relevant_bases")[short] = -1
        getattr(xp, f"{b}_standard_deviation")[short] = np.nan
    write_xp_continuous(xp, tmp_path / "x.csv")
    text = (tmp_path / "x.csv").read_bytes()
    cut = text.index(b"\n", len(text) // 3) + 1
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(text) if members == 1 else gzip.compress(text[:cut]) + gzip.compress(text[cut:]))
    want = read_xp_continuous_reference(path, blank_irrelevant=False)
    assert_same(xp, want)
    for chunk_bytes in (2000, 30_000):
        got = read_xp_continuous(path, blank_irrelevant=False, threads=2, chunk_bytes=chunk_bytes)
        assert_same(want, got)
        assert got.bp_coefficients.base is None or got.bp_coefficients.base.shape[0] <= n + max(64, n // 16)


def test_parse_into_checks_the_arrays(rng, tmp_path):
    """The core parses into the caller's arrays only: rows that do not fit leave them as
    they were; an array of another dtype is refused, never parsed into a converted copy."""
    from lamfast import _core
    from lamfast.io.xp_archive import _empty_arrays, _field_plan

    xp = random_xp(rng, 5, correlations=False)
    write_xp_continuous(xp, tmp_path / "x.csv")
    header, body = (tmp_path / "x.csv").read_bytes().split(b"\n", 1)
    plan = _field_plan(header.decode().split(","), "x.csv", False, ())
    arrays = _empty_arrays(False, 0, 7)
    arrays["source_id"][:] = -7
    assert _core.parse_xp_text_into(body, *plan, ",", arrays, 3, 1) == (None, 5, -1)
    assert (arrays["source_id"] == -7).all()
    assert _core.parse_xp_text_into(body, *plan, ",", arrays, 2, 2) == (None, 5, 5)
    assert arrays["source_id"].tolist() == [-7, -7] + xp.source_id.tolist()
    assert np.array_equal(arrays["rp_coefficients"][2:], xp.rp_coefficients, equal_nan=True)
    arrays["bp_coefficients"] = arrays["bp_coefficients"].astype(np.float32)
    with pytest.raises(ValueError, match="bp_coefficients: wrong dtype"):
        _core.parse_xp_text_into(body, *plan, ",", arrays, 0, 1)


def number_texts(rng, n: int) -> list[str]:
    """n decimal numbers in every form the parser's fast path and its fallback meet: repr of
    doubles and float32 over many decades, %g/%f/%e at 1-20 digits, 17-20 digit mantissas,
    integers halfway between two doubles, leading zeros, signs, 'E', exponents."""
    out = []
    while len(out) < n:
        x = float(rng.normal() * 10.0 ** rng.uniform(-30, 30))
        p = int(rng.integers(1, 21))
        s = 54 + int(rng.integers(0, 9))   # a double spacing of 2^(s-53): 2..512
        halfway = (2**(s - 1) + int(rng.integers(0, 2**(s - 1))) // 2**(s - 53) * 2**(s - 53)
                   + 2**(s - 54))
        digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, 21))))
        cut = int(rng.integers(1, len(digits) + 1))
        out += [repr(x), str(np.float32(x)), f"{x:.{p}g}", f"{x:.{p % 13}f}", f"{x:.{p}e}",
                f"{x:.{p}E}", str(halfway), f"{halfway}.0", f"{halfway}e-{p}",
                f"-{digits[:cut]}.{digits[cut:] or '0'}", f"{digits}e+{p}",
                f"000{digits[:cut]}.{digits[cut:]}00" if cut < len(digits) else f"0{digits}",
                "-0.0", f"{rng.integers(0, 10**6)}"]
    return out[:n]


def near_halfway_texts(rng, n: int) -> list[str]:
    """n 19-digit decimals within half a 64-bit ulp of a point halfway between two
    doubles, but not on it: rounded to 64 bits first they land on the halfway point, where
    rounding again to double goes the wrong way half the time."""
    out = []
    while len(out) < n:
        e = int(rng.integers(-20, 20))
        halfway = (Fraction(2**52 + int(rng.integers(0, 2**52)), 2**52) + Fraction(1, 2**53)) * Fraction(2)**e
        k = 18 - math.floor(math.log10(halfway))   # 19 significant digits
        digits = round(halfway * 10**k)
        if digits != halfway * 10**k and abs(Fraction(digits, 10**k) - halfway) <= Fraction(2)**(e - 64):
            out.append(f"{digits}e-{k}")
    return out


def test_numbers_parse_to_the_correctly_rounded_value(rng, tmp_path):
    """Every number as Python's float() (correctly rounded) reads it; float32 columns are
    that double rounded to float32, as before the fast path."""
    n = int(rng.integers(20, 40))
    texts = np.array(number_texts(rng, n * 4 * N_BASES))
    texts[rng.choice(texts.size, 40, replace=False)] = near_halfway_texts(rng, 40)
    texts = texts.reshape(4, n, N_BASES)
    cols = ["bp_coefficients", "bp_coefficient_errors", "rp_coefficients", "rp_coefficient_errors"]
    lines = ["source_id," + ",".join(cols)]
    for i in range(n):
        lines.append(f"{i + 1}," + ",".join('"(' + ", ".join(texts[c, i]) + ')"' for c in range(4)))
    path = tmp_path / "numbers.csv"
    path.write_text("\n".join(lines) + "\n")
    xp = read_xp_continuous(path, blank_irrelevant=False, threads=2)
    want = np.vectorize(float, otypes=[np.float64])(texts)
    for c, name in enumerate(cols):
        got = getattr(xp, name)
        expected = want[c] if got.dtype == np.float64 else want[c].astype(np.float32)
        assert np.array_equal(got, expected), (name, texts[c][got != expected][:5])


def test_header_only_file(tmp_path):
    xp = random_xp(np.random.default_rng(1), 0)
    for name in ("e.csv", "e.ecsv"):
        write_xp_continuous(xp, tmp_path / name)
        for read in READERS:
            got = read(tmp_path / name, correlations=True)
            assert len(got) == 0 and got.bp_coefficients.shape == (0, N_BASES)
            assert got.rp_coefficient_correlations.shape == (0, N_CORRELATIONS)


def test_ecsv_column_order_from_header(rng, tmp_path):
    """Columns in another order (and extra columns) are found by name."""
    xp = random_xp(rng, 5)
    write_xp_continuous(xp, tmp_path / "a.ecsv")
    lines = (tmp_path / "a.ecsv").read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    import csv
    import io
    rows = list(csv.reader(io.StringIO("\n".join(ln for ln in lines if not ln.startswith("#")))))
    order = list(range(len(rows[0])))[::-1]  # reversed columns
    blocks, block = [], []
    for ln in header[4:]:  # one YAML block per column, after '# datatype:'
        if ln == "# -" and block:
            blocks.append(block)
            block = []
        block.append(ln)
    blocks.append(block)
    out = io.StringIO()
    out.write("\n".join(header[:4] + [ln for i in order for ln in blocks[i]]) + "\n")
    w = csv.writer(out, lineterminator="\n")
    for r in rows:
        w.writerow([r[i] for i in order])
    (tmp_path / "b.ecsv").write_text(out.getvalue())
    for read in READERS:
        assert_same(read(tmp_path / "a.ecsv", correlations=True),
                     read(tmp_path / "b.ecsv", correlations=True))


def test_ecsv_names_must_match_header(rng, tmp_path):
    write_xp_continuous(random_xp(rng, 2), tmp_path / "a.ecsv")
    text = (tmp_path / "a.ecsv").read_text().replace("source_id,bp_standard", "sid,bp_standard")
    (tmp_path / "b.ecsv").write_text(text)
    for read in READERS:
        with pytest.raises(ValueError, match="b.ecsv: ECSV names line"):
            read(tmp_path / "b.ecsv")


# ---- bad files: the error names file, line, row and column ---------------------------------

def _written(rng, tmp_path, name="bad.csv", n=4):
    xp = random_xp(rng, n, correlations=False)
    xp.bp_coefficients[:] = rng.normal(size=xp.bp_coefficients.shape)  # no missing BP
    xp.bp_coefficient_errors[:] = 1.0
    xp.bp_n_relevant_bases[:] = 55
    write_xp_continuous(xp, tmp_path / name)
    return (tmp_path / name).read_text().splitlines(keepends=True)


def _expect(path, *patterns):
    for read in READERS:
        with pytest.raises(ValueError) as info:
            read(path, threads=2) if read is read_xp_continuous else read(path)
        for p in patterns:
            assert p in str(info.value), (read.__name__, str(info.value))


def test_error_truncated_gzip(rng, tmp_path):
    xp = random_xp(rng, 20)
    write_xp_continuous(xp, tmp_path / "t.csv.gz")
    data = (tmp_path / "t.csv.gz").read_bytes()
    (tmp_path / "t.csv.gz").write_bytes(data[: len(data) // 2])
    _expect(tmp_path / "t.csv.gz", "t.csv.gz", "truncated or corrupt gzip")


def test_error_54_coefficients(rng, tmp_path):
    lines = _written(rng, tmp_path)
    # row 2 (file line 4): drop the last BP coefficient
    cells = lines[3].split('"')
    arr = cells[1]
    assert arr.startswith("(")
    cells[1] = arr[: arr.rindex(",")] + ")"
    lines[3] = '"'.join(cells)
    (tmp_path / "bad.csv").write_text("".join(lines))
    _expect(tmp_path / "bad.csv", "bad.csv", "line 4", "data row 2", "'bp_coefficients'",
            "54 values, expected 55")


def test_error_non_numeric_cell(rng, tmp_path):
    lines = _written(rng, tmp_path, "bad.ecsv")
    n_header = sum(ln.startswith("#") for ln in lines) + 1
    row = 1
    lines[n_header + row] = lines[n_header + row].replace(", ", ",", 0)
    cells = lines[n_header + row].split(",")
    cells[1] = "abc"  # bp_standard_deviation
    lines[n_header + row] = ",".join(cells)
    (tmp_path / "bad.ecsv").write_text("".join(lines))
    _expect(tmp_path / "bad.ecsv", "bad.ecsv", f"line {n_header + row + 1}", "data row 1",
            "'bp_standard_deviation'", "'abc'")


def test_error_non_numeric_array_element(rng, tmp_path):
    lines = _written(rng, tmp_path)
    first = lines[1].index("(") + 1
    lines[1] = lines[1][:first] + "x" + lines[1][first:]
    (tmp_path / "bad.csv").write_text("".join(lines))
    _expect(tmp_path / "bad.csv", "line 2", "data row 0", "'bp_coefficients'", "as a number")


def test_error_missing_required_column(rng, tmp_path):
    lines = _written(rng, tmp_path)
    lines[0] = lines[0].replace("rp_coefficient_errors", "rp_errs")
    (tmp_path / "bad.csv").write_text("".join(lines))
    _expect(tmp_path / "bad.csv", "bad.csv", "missing required column", "rp_coefficient_errors")
    with pytest.raises(ValueError, match="bp_coefficient_correlations"):
        read_xp_continuous(tmp_path / "bad.csv", correlations=True)


def test_error_field_count_and_quotes(rng, tmp_path):
    lines = _written(rng, tmp_path)
    good = list(lines)
    lines[2] = lines[2].rstrip("\n") + ",17\n"
    (tmp_path / "bad.csv").write_text("".join(lines))
    _expect(tmp_path / "bad.csv", "line 3", "data row 1", "fields")
    lines = list(good)
    lines[3] = lines[3][: lines[3].rindex('"')] + "\n"  # unterminated last quoted field
    (tmp_path / "bad.csv").write_text("".join(lines))
    for read in READERS:
        with pytest.raises(ValueError, match="line 4"):
            read(tmp_path / "bad.csv")


def test_error_not_an_array(rng, tmp_path):
    lines = _written(rng, tmp_path)
    lines[1] = lines[1].replace('"(', '"{', 1)
    (tmp_path / "bad.csv").write_text("".join(lines))
    _expect(tmp_path / "bad.csv", "line 2", "'bp_coefficients'", "not an array")


def test_error_bad_fits_array(tmp_path):
    from astropy.table import Table

    cells = np.empty(2, object)
    cells[0], cells[1] = np.ones(55), np.ones(54)
    t = Table({"source_id": np.array([1, 2]), "bp_coefficients": cells,
               "bp_coefficient_errors": cells, "rp_coefficients": cells,
               "rp_coefficient_errors": cells})
    t.write(tmp_path / "bad.fits")
    with pytest.raises(ValueError, match=r"bad.fits: row 1, column 'bp_coefficients': 54 values"):
        read_xp_continuous(tmp_path / "bad.fits")


def test_bad_arguments(rng, tmp_path):
    with pytest.raises(FileNotFoundError):
        read_xp_continuous(tmp_path / "nope.csv")
    write_xp_continuous(random_xp(rng, 2), tmp_path / "a.csv")
    with pytest.raises(ValueError, match="format"):
        read_xp_continuous(tmp_path / "a.csv", format="hdf5")
    with pytest.raises(ValueError, match="threads"):
        read_xp_continuous(tmp_path / "a.csv", threads=0)
    with pytest.raises(ValueError, match="missing required column"):
        read_xp_continuous(tmp_path / "a.csv", extra_columns=["parallax"])


# ---- derived quantities ------------------------------------------------------------------------

def test_covariance(rng):
    xp = random_xp(rng, 3)
    cov = xp.covariance("rp")
    lo = np.tril_indices(N_BASES, -1)
    err = xp.rp_coefficient_errors.astype(np.float64)
    for i in range(3):
        assert np.allclose(cov[i], cov[i].T, equal_nan=True)
        assert np.array_equal(np.diag(cov[i]), err[i] ** 2, equal_nan=True)
        want = xp.rp_coefficient_correlations[i].astype(np.float64) * err[i][lo[0]] * err[i][lo[1]]
        assert np.array_equal(cov[i][lo], want, equal_nan=True)
    with pytest.raises(ValueError, match="band"):
        xp.covariance("g")


def test_many_files_concatenate(rng, tmp_path):
    a, b = random_xp(rng, 3), random_xp(rng, 5)
    write_xp_continuous(a, tmp_path / "a.csv")
    write_xp_continuous(b, tmp_path / "b.ecsv.gz")
    c = random_xp(rng, 1)
    write_xp_continuous(c, tmp_path / "c.csv.gz")
    paths = [tmp_path / "a.csv", tmp_path / "b.ecsv.gz", tmp_path / "c.csv.gz"]
    for workers in (None, 1, 2, 3):
        both = read_xp_continuous_many(paths, blank_irrelevant=False, correlations=True,
                                       workers=workers, threads=2)
        assert_same(XpContinuous.concatenate([a, b, c]), both)
        assert both.meta["paths"] == [str(p) for p in paths]
    with pytest.raises(ValueError, match="no files"):
        read_xp_continuous_many([])
    (tmp_path / "bad.csv").write_text("source_id\n1\n")
    with pytest.raises(ValueError, match="bad.csv: missing required column"):
        read_xp_continuous_many(paths + [tmp_path / "bad.csv"], workers=2)


def test_xp_catalog_gnorm(rng):
    xp = random_xp(rng, 6, correlations=False, extra=("phot_g_mean_mag",))
    g = xp.extra["phot_g_mean_mag"]
    cat = xp_catalog(xp)
    assert cat.columns[:2] == ["bp0", "bp1"] and cat.columns[55] == "rp0" and len(cat.columns) == 110
    want = (xp.coefficients / g_flux(g)[:, None]).astype(np.float32)
    assert np.array_equal(cat.values, want, equal_nan=True)
    want_err = (xp.coefficient_errors.astype(np.float64) / g_flux(g)[:, None]).astype(np.float32)
    assert np.array_equal(cat.errors, want_err, equal_nan=True)
    assert np.isnan(cat.values[np.isnan(g)]).all()  # no G: missing, not mis-scaled
    short = xp_catalog(xp, g_mag=np.full(6, 12.0), n_coefficients=30)
    assert short.columns == [f"bp{i}" for i in range(30)] + [f"rp{i}" for i in range(30)]
    with pytest.raises(ValueError, match="shape"):
        xp_catalog(xp, g_mag=np.ones(5))
    xp.extra.clear()
    with pytest.raises(ValueError, match="phot_g_mean_mag"):
        xp_catalog(xp)


def test_xp_catalog_joins_photometry(rng):
    xp = random_xp(rng, 5, correlations=False)
    ids = xp.source_id
    # photometry for 3 of the 5 stars, shuffled, plus one unrelated star
    pick = np.array([4, 0, 2])
    phot_ids = np.concatenate([ids[pick], [7]])
    g = rng.uniform(8, 17, size=4)
    values = rng.normal(size=(4, 2)).astype(np.float32)
    phot = Catalog(["bprp", "jh"], values, values * 0.1, phot_ids.astype(np.int64), {},
                   {"phot_g_mean_mag": g, "ruwe": rng.uniform(0.8, 2, size=4)})
    cat = xp_catalog(xp, photometry=phot)
    assert cat.columns[-2:] == ["bprp", "jh"]
    for j, i in enumerate(pick):
        assert np.array_equal(cat.values[i, -2:], values[j])
        assert cat.extra["phot_g_mean_mag"][i] == g[j]
        assert cat.extra["ruwe"][i] == phot.extra["ruwe"][j]
    for i in (1, 3):
        assert np.isnan(cat.values[i]).all() and np.isnan(cat.extra["ruwe"][i])
    dup = Catalog(["bprp"], np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32),
                  np.array([ids[0], ids[0]]), {}, {"phot_g_mean_mag": np.ones(2)})
    with pytest.raises(ValueError, match="duplicate source_id"):
        xp_catalog(xp, photometry=dup)


def test_ecsv_header_with_tags_and_space_delimiter(rng, tmp_path):
    """astropy-style headers: custom YAML tags in meta, space delimiter, unquoted arrays."""
    xp = random_xp(rng, 3, correlations=False)
    write_xp_continuous(xp, tmp_path / "a.ecsv")
    lines = (tmp_path / "a.ecsv").read_text().splitlines()
    head = [ln for ln in lines if ln.startswith("#")]
    head = [ln.replace("# delimiter: ','", "# delimiter: ' '") for ln in head]
    head.insert(2, "# meta: !!omap\n# - {unit: !astropy.units.Unit {unit: mag}}")
    head = "\n".join(head).split("\n")
    import csv
    import io
    rows = list(csv.reader(io.StringIO("\n".join(ln for ln in lines if not ln.startswith("#")))))
    body = [" ".join(c.replace(", ", ",") if c else '""' for c in r) for r in rows]
    (tmp_path / "b.ecsv").write_text("\n".join(head + body) + "\n")
    for read in READERS:
        assert_same(read(tmp_path / "a.ecsv"), read(tmp_path / "b.ecsv"))


def test_malloc_thresholds_leave_the_users_alone(monkeypatch):
    """The reader's glibc thresholds (lamfast._malloc) are not set over malloc options the
    user gave in the environment."""
    from lamfast import _malloc

    for name, value in (("MALLOC_TRIM_THRESHOLD_", "1000000"), ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4096")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert _malloc._mallopt_thresholds() is False
