// Shared vocabulary of the column-table cores: row-major float32 [N, V] tables with
// NaN = missing, per-column standardisation, and the first-bad-cell report.
#pragma once
#include <cstdint>
#include <vector>

#include "row_mask.hpp"

namespace lamfast {

// First offending cell found (smallest row, then values before errors); row < 0: none.
struct BadCell {
  int64_t row = -1;
  int32_t col = -1;
  bool in_errors = false;  // the offending cell is in `errors`, not `values`
};

// Optional per-column affine standardisation: x -> (x - center[c]) * inv_scale[c].
struct Standardize {
  const float* center = nullptr;     // [V] or null (identity)
  const float* inv_scale = nullptr;  // [V]
};

// Slow path, run only once an infinity is known to be in rows [begin, end).
inline BadCell find_inf(const float* values, const float* errors, int64_t begin, int64_t end,
                        int32_t v) {
  for (int64_t i = begin; i < end; ++i) {
    for (int32_t c = 0; c < v; ++c)
      if (is_inf(values[i * v + c])) return {i, c, false};
    if (errors)
      for (int32_t c = 0; c < v; ++c)
        if (values[i * v + c] == values[i * v + c] && is_inf(errors[i * v + c]))
          return {i, c, true};
  }
  return {};
}

// Presence mask of a row, and whether a present value or its error is infinite.
inline bool presence_mask_checked(const float* row, const float* err, int32_t v,
                                  uint64_t* mask) {
  bool inf = presence_mask(row, v, mask);
  if (err)
    for_each_set(mask, mask_words(v), [&](int32_t c) {
      inf |= is_inf(err[c]);
      return true;
    });
  return inf;
}

// Per-thread findings -> the first bad cell overall (threads own increasing row ranges).
inline BadCell first_of(const std::vector<BadCell>& found) {
  for (const auto& b : found)
    if (b.row >= 0) return b;
  return {};
}

}  // namespace lamfast
