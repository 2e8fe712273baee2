// Catalogue columns -> packed ragged token sets (flat tokens + cu_seqlens), and the
// paper's self-supervised training sampler. Pure C++17, no Python.
//
// Layout conventions: values/errors are row-major float32 [N, V], NaN = missing;
// column c carries vocabulary id token_ids[c]. Both operations run in two passes:
// `*_count` fills per-star lengths (the caller prefix-sums them into cu_seqlens and
// allocates), then `*_fill` writes every star at its offset. Both passes are pure
// functions of their inputs, so results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace lamfast {

// First offending cell found (smallest row, then column); row < 0 means none.
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

// Pass 1: seqlens[i] = min(#finite values of row i, max_tokens). Reports +/-inf.
BadCell tokenize_count(const float* values, const float* errors, int64_t n, int32_t v,
                       int32_t max_tokens, int32_t* seqlens, int threads);

// Pass 2: writes row i's first seqlen tokens (column order) at cu_seqlens[i].
// out_error may be null; errors may be null (then out_error must be null).
void tokenize_fill(const float* values, const float* errors, int64_t n, int32_t v,
                   const int32_t* token_ids, Standardize standardize,
                   const int32_t* cu_seqlens, int32_t* out_id, float* out_value,
                   float* out_error, int threads);

struct SamplerConfig {
  uint64_t seed = 0;
  uint64_t epoch = 0;
  int32_t context = 64;      // crop the shuffled valid tokens to this many
  int32_t max_blank = 59;    // then drop b ~ U{0..min(max_blank, L-1)} of them
  int32_t n_outputs = 1;     // requested tokens per star (fewer if fewer candidates)
  bool exclude_inputs = false;  // never request a token that is also an input
};

// Pass 1 of the sampler: per-star input and target counts.
BadCell sample_count(const float* values, const float* errors, int64_t n, int32_t v,
                     const int64_t* star_ids, const int32_t* output_weights,
                     const SamplerConfig& cfg, int32_t* n_inputs, int32_t* n_targets,
                     int threads);

// Pass 2: inputs (column order) at cu_inputs[i], targets (draw order) at cu_targets[i].
// Target errors are the label errors, NaN -> 0 (the authors' convention).
void sample_fill(const float* values, const float* errors, int64_t n, int32_t v,
                 const int64_t* star_ids, const int32_t* output_weights,
                 const SamplerConfig& cfg, const int32_t* token_ids,
                 Standardize standardize, const int32_t* cu_inputs,
                 const int32_t* cu_targets, int32_t* in_id, float* in_value,
                 float* in_error, int32_t* target_id, float* target_value,
                 float* target_error, int threads);

}  // namespace lamfast
