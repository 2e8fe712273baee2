// Catalogue columns -> packed ragged token sets (flat tokens + cu_seqlens). Pure C++17.
//
// Two passes: `tokenize_count` fills per-star lengths (the caller prefix-sums them into
// cu_seqlens and allocates), then `tokenize_fill` writes every star at its offset. Both
// are pure functions of their inputs, so results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "columns.hpp"

namespace lamfast {

// Pass 1: seqlens[i] = min(#present values of row i, max_tokens). Reports +/-inf.
BadCell tokenize_count(const float* values, const float* errors, int64_t n, int32_t v,
                       int32_t max_tokens, int32_t* seqlens, int threads);

// Pass 2: writes row i's first seqlen present cells (column order) at cu_seqlens[i];
// column c becomes token token_ids[c]. errors/out_error: both null or both set.
void tokenize_fill(const float* values, const float* errors, int64_t n, int32_t v,
                   const int32_t* token_ids, Standardize standardize,
                   const int32_t* cu_seqlens, int32_t* out_id, float* out_value,
                   float* out_error, int threads);

}  // namespace lamfast
