"""Comparison baselines: the experts trained for exactly the task (XGBoost, as in the paper,
and a supervised MLP), each tuned on the validation split, and the stock-PyTorch model."""
