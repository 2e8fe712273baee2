"""The hyperparameter search the experts share: a logged coordinate search on the
validation split.

From a start configuration, each parameter in turn takes each of its values with the
others held at the best configuration so far; the best is the one of least validation
score of *all* tried (ties: the one tried first). It costs the sum, not the product, of
the grid's sizes, which is what lets an honest search run on one CPU thread in minutes.
"""

from __future__ import annotations

from collections.abc import Callable


def coordinate_search(start: dict, grid: dict, fit: Callable[[dict], tuple[dict, object]],
                      log: Callable[[dict], None] | None = None) -> tuple[dict, object, list[dict]]:
    """Search ``grid`` ({parameter: values}) from ``start`` ({parameter: value}).

    fit : config -> (row, model); row holds at least ``val_scatter`` (lower is better) and
        is what the search log keeps of that configuration.
    log : called with each row as soon as it is made.

    Returns
    -------
    best : the chosen configuration ({parameter: value}).
    model : its fitted model.
    rows : one row per configuration tried, in order, each with its parameters and
        ``chosen`` (True on exactly one).
    """
    unknown = sorted(set(grid) - set(start))
    if unknown:
        raise ValueError(f"grid parameters without a start value: {unknown}")
    tried: dict[tuple, tuple[dict, object]] = {}
    best = dict(start)
    for name, values in grid.items():
        for value in values:
            config = {**best, name: value}
            key = tuple(sorted(config.items()))
            if key not in tried:
                row, model = fit(config)
                tried[key] = ({**config, **row, "chosen": False}, model)
                if log:
                    log(tried[key][0])
        row = min((r for r, _ in tried.values()), key=lambda r: r["val_scatter"])
        best = {k: row[k] for k in start}
    row, model = tried[tuple(sorted(best.items()))]
    row["chosen"] = True
    return best, model, [r for r, _ in tried.values()]
