"""bench_scale's verdicts from measured rows: the fit wall = a + b*N and the linearity check.

No timings: rows are made up from a known fixed cost and marginal cost, so the fit must
recover them and the verdict must follow the marginal costs, not the raw seconds per star."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO

if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from benchmarks.bench_scale import checks, linear_fit, linearity  # noqa: E402


def rows_for(stars, fixed, per_star, bend=1.0):
    """Rows of the tiny model: wall = fixed + per_star*N, the last step's cost times ``bend``."""
    wall = [fixed + per_star * n for n in stars]
    wall[-1] = wall[-2] + (wall[-1] - wall[-2]) * bend
    return [{"model": "tiny", "stars": n, "wall_s": w, "stars_per_s": n / w, "peak_rss_mb": 900.0,
             "read_s": 0.01 * w, "tokenize_s": 0.002 * w, "write_s": 0.003 * w} for n, w in zip(stars, wall)]


def test_fit_recovers_the_fixed_and_marginal_cost():
    rng = np.random.default_rng()
    fixed, per_star = rng.uniform(2, 30), rng.uniform(5e-5, 5e-3)
    stars = sorted(rng.choice(np.arange(10_000, 20_000_000, 7_919), 4, replace=False).tolist())
    a, b = linear_fit(stars, [fixed + per_star * n for n in stars])
    assert a == pytest.approx(fixed, rel=1e-6, abs=1e-6)
    assert b == pytest.approx(per_star, rel=1e-9)


def test_a_large_fixed_cost_is_linear_although_seconds_per_star_vary():
    rng = np.random.default_rng()
    lines = linearity(rows_for([100_003, 1_000_017, 9_999_991], fixed=rng.uniform(20, 40),
                               per_star=rng.uniform(1e-4, 2e-4)))
    assert "(linear within 10 %: yes)" in lines[1]
    spread = float(lines[2].split("vary ")[1].split("x")[0])
    assert spread > 1.1          # the raw per-star view alone would have called it non-linear


@pytest.mark.parametrize("bend, verdict", [(1.05, "yes"), (1.25, "no"), (0.8, "no")])
def test_linearity_follows_the_marginal_cost_between_sizes(bend, verdict):
    lines = linearity(rows_for([99_991, 1_000_003, 10_000_019], fixed=7.3, per_star=1.7e-4, bend=bend))
    assert f"(linear within 10 %: {verdict})" in lines[1]


def test_two_sizes_give_a_fit_but_no_verdict():
    lines = linearity(rows_for([50_021, 400_009], fixed=3.1, per_star=2.3e-4))
    assert "fixed start-up 3.1 s" in lines[0]
    assert not any("linear within" in line for line in lines)


def test_checks_compare_the_pipeline_stages_with_the_default_model():
    rows = rows_for([100_000, 1_000_000, 3_000_000], fixed=9.0, per_star=1.3e-4)
    rows.append({"model": "default", "stars": 100_000, "wall_s": 250.0, "stars_per_s": 400.0,
                 "peak_rss_mb": 880.0, "read_s": 1.0, "tokenize_s": 0.1, "write_s": 0.5})
    out = checks(rows)
    stage = next(line for line in out if line.startswith("The pipeline's own stages"))
    assert "(>= 10x: yes)" in stage
    assert any(line.startswith("At 100,000 stars the tiny model labels") for line in out)
