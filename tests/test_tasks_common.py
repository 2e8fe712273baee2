"""lamfast.tasks.common hands the tasks' inputs to predict as given (predict standardises
them in float64): no float32 rounding before the median is taken away."""

import numpy as np

from lamfast.tasks.common import inputs_from, predict_arrays


class Echo:
    """A stand-in predicting each requested input as itself, error 0."""

    vocab = "stub"

    def predict(self, values, columns, request, **kwargs):
        self.dtype = values.dtype
        out = {r: values[:, columns.index(r)] for r in request}
        return {**out, **{f"{r}_error": np.zeros(len(values)) for r in request}}


def test_inputs_reach_predict_in_float64():
    teff = np.array([5777.0001, 4000.00003])             # float32 keeps neither fraction
    values, columns = inputs_from(2, {"teff": teff, "logg": 4.44, "m_h": None})
    assert columns == ["teff", "logg"] and values.dtype == np.float64
    echo = Echo()
    value, error = predict_arrays(echo, values, columns, ["teff", "logg"])
    assert echo.dtype == np.float64
    np.testing.assert_array_equal(value, np.stack([teff, [4.44, 4.44]], axis=1))
    assert value.dtype == error.dtype == np.float64 and not error.any()
