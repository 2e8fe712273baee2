import math

import numpy as np
import torch

from lamfast.loss import gaussian_nll


def test_matches_hand_computed_per_star_sum_mean(rng):
    counts = [2, 0, 1, 3]
    cu = torch.tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.int32)
    r = cu[-1].item()
    mu, logvar, y = (torch.tensor(rng.normal(size=r)) for _ in range(3))
    sigma = torch.tensor(np.abs(rng.normal(size=r)))
    total = 0.0
    for b in range(4):
        for j in range(cu[b], cu[b + 1]):
            v = math.exp(logvar[j]) + sigma[j] ** 2
            total += 0.5 * ((y[j] - mu[j]) ** 2 / v + math.log(v))
    expected = total / 3  # the star with no request does not count
    assert abs(gaussian_nll(mu, logvar, y, sigma, cu).item() - float(expected)) < 1e-5 * abs(float(expected))


def test_minimum_at_true_variance():
    # For y ~ N(0, 1) with sigma = 0, the expected loss is minimal at logvar = 0.
    torch.manual_seed(0)
    y = torch.randn(200_000)
    cu = torch.arange(len(y) + 1, dtype=torch.int32)
    zeros = torch.zeros_like(y)
    losses = [gaussian_nll(zeros, torch.full_like(y, s), y, zeros, cu).item() for s in (-0.5, 0.0, 0.5)]
    assert losses[1] < losses[0] and losses[1] < losses[2]
