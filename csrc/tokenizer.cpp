#include "tokenizer.hpp"

#include <algorithm>
#include <vector>

#include "parallel.hpp"

namespace lamfast {
namespace {

constexpr int64_t kRowsPerThread = 4096;  // below this, threads cost more than they save

// Writes each row's present cells straight to its slot of the output, visiting only
// set bits of its presence mask. Templated so the per-token loop has no run-time switch.
template <bool kStandardize, bool kErrors>
void fill_rows(const float* values, const float* errors, int64_t begin, int64_t end,
               int32_t v, const int32_t* token_ids, Standardize s, const int32_t* cu_seqlens,
               int32_t* out_id, float* out_value, float* out_error) {
  const int32_t words = mask_words(v);
  std::vector<uint64_t> mask(words);
  for (int64_t i = begin; i < end; ++i) {
    int64_t at = cu_seqlens[i];
    const int64_t stop = cu_seqlens[i + 1];  // may be short of the row's count (max_tokens)
    if (at == stop) continue;
    const float* row = values + i * v;
    const float* err = kErrors ? errors + i * v : nullptr;
    presence_mask(row, v, mask.data());
    for_each_set(mask.data(), words, [&](int32_t c) {
      out_id[at] = token_ids[c];
      out_value[at] = kStandardize ? (row[c] - s.center[c]) * s.inv_scale[c] : row[c];
      if constexpr (kErrors) out_error[at] = kStandardize ? err[c] * s.inv_scale[c] : err[c];
      return ++at < stop;
    });
  }
}

}  // namespace

BadCell tokenize_count(const float* values, const float* errors, int64_t n, int32_t v,
                       int32_t max_tokens, int32_t* seqlens, int threads) {
  std::vector<BadCell> found(std::max(threads, 1));
  parallel_for(n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int t) {
    const int32_t words = mask_words(v);
    std::vector<uint64_t> mask(words);
    bool any_inf = false;
    for (int64_t i = begin; i < end; ++i) {
      any_inf |= presence_mask_checked(values + i * v, errors ? errors + i * v : nullptr, v,
                                       mask.data());
      seqlens[i] = std::min(popcount(mask.data(), words), max_tokens);
    }
    if (any_inf) found[t] = find_inf(values, errors, begin, end, v);
  });
  return first_of(found);
}

void tokenize_fill(const float* values, const float* errors, int64_t n, int32_t v,
                   const int32_t* token_ids, Standardize standardize,
                   const int32_t* cu_seqlens, int32_t* out_id, float* out_value,
                   float* out_error, int threads) {
  auto fill = standardize.center
                  ? (out_error ? fill_rows<true, true> : fill_rows<true, false>)
                  : (out_error ? fill_rows<false, true> : fill_rows<false, false>);
  parallel_for(n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int) {
    fill(values, errors, begin, end, v, token_ids, standardize, cu_seqlens, out_id,
         out_value, out_error);
  });
}

}  // namespace lamfast
