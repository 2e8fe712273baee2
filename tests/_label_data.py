"""Inputs shared by the labelling tests: a tiny saved model and synthetic catalogue files."""

import numpy as np

from lamfast import LAM, LAMConfig, Normalizer
from lamfast.data.synthetic import make_synthetic
from lamfast.io import write_parquet
from lamfast.io.paper_hdf5 import write_paper_hdf5

TINY = LAMConfig(width=16, encoder_heads=(2, 1), encoder_ffn=(32, 16), decoder_heads=(2, 1, 1),
                 decoder_ffn=(24, 12, 8), head_mlp=(20, 10), dropout=0.0)
REQUEST = ["teff", "logg", "m_h"]
EMPTY_ROWS = (3, 150)   # stars whose inputs are all missing (flagged, never dropped)


def synthetic_catalog(n, seed):
    """make_synthetic's catalogue with the inputs of EMPTY_ROWS blanked (their labels kept)."""
    cat = make_synthetic(n, seed=seed).catalog
    labels = [cat.columns.index(c) for c in REQUEST]
    for row in EMPTY_ROWS:
        if row < n:
            keep = cat.values[row, labels].copy()
            cat.values[row] = np.nan
            cat.values[row, labels] = keep
    return cat


def save_tiny_model(folder, catalog, seed=0):
    """A random-weights LAM with stats fitted on ``catalog``, saved to ``folder``."""
    import torch

    torch.manual_seed(seed)
    model = LAM(TINY, normalizer=Normalizer.fit(catalog.values, catalog.columns))
    with torch.no_grad():  # off the init so nothing is trivially symmetric
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    model.save(folder)
    return model.eval()


def write_inputs(folder, n_parquet=230, n_hdf5=170):
    """Two catalogue files (Parquet with 50-row groups, the paper's HDF5); returns paths, catalogues."""
    a, b = synthetic_catalog(n_parquet, seed=1), synthetic_catalog(n_hdf5, seed=2)
    write_parquet(a, folder / "a.parquet", row_group_size=50)
    write_paper_hdf5(folder / "b.h5", b)
    return [folder / "a.parquet", folder / "b.h5"], [a, b]


def assert_same_labels(got, want):
    """Two read_output tables: bit-identical predictions and errors of REQUEST, NaN included."""
    for name in REQUEST:
        for suffix in ("", "_error"):
            assert np.array_equal(got[name + suffix], want[name + suffix], equal_nan=True), name + suffix
