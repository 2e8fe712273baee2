"""Comparison baselines: the XGBoost expert of the paper, the stock-PyTorch model."""
