"""The paper's training loss: heteroscedastic Gaussian negative log-likelihood with the
label's own uncertainty added to the predicted variance (Leung & Bovy 2024)."""

from __future__ import annotations

import torch


def gaussian_nll(mu: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor,
                 target_error: torch.Tensor, cu_targets: torch.Tensor) -> torch.Tensor:
    """Mean over stars of the per-star sum over requests of
    0.5 * [(y - mu)^2 / V + ln V],  V = exp(logvar) + sigma_label^2  (all standardised).

    mu, logvar, target, target_error : [R] one entry per requested token
    cu_targets : int [B+1] star b owns requests cu_targets[b]:cu_targets[b+1]
    Stars with no request do not count in the mean. Computed in fp32.
    """
    mu, logvar = mu.float(), logvar.float()
    var = torch.exp(logvar) + target_error.float() ** 2
    per_request = 0.5 * ((target.float() - mu) ** 2 / var + torch.log(var))
    counts = cu_targets[1:] - cu_targets[:-1]
    n_stars = torch.count_nonzero(counts).clamp_min(1)
    # sum over requests then mean over stars == total / number of stars with requests
    return per_request.sum() / n_stars
