// The paper's self-supervised training sampler (Leung & Bovy 2024). Pure C++17.
//
// Per star and epoch: shuffle the present tokens, crop to `context`, drop
// b ~ U{0..min(max_blank, L-1)} trailing ones, then draw `n_outputs` requested tokens
// (weighted, without replacement) among the present members of the output list.
// Every random number is slot_random(star_key(seed, epoch, star_id), slot) (hash.hpp):
// the shuffle key of column c is slot c with its low ceil(log2 V) bits replaced by c,
// the blank count is slot V, and draw j is slot V+1+j.
// lamfast/sampler.py holds the numpy reference, which reproduces this bit for bit.
#pragma once
#include <cstdint>

#include "columns.hpp"

namespace lamfast {

struct SamplerConfig {
  uint64_t seed = 0;
  uint64_t epoch = 0;
  int32_t context = 64;
  int32_t max_blank = 59;
  int32_t n_outputs = 1;
  bool exclude_inputs = false;  // never request a token that is also an input
};

// Pass 1: draws every star. Writes input_masks [N, mask_words(V)] (bit c = column c is
// an input), target_cols [N, n_outputs] (draw order, -1 = none), and the counts.
BadCell sample_draw(const float* values, const float* errors, int64_t n, int32_t v,
                    const int64_t* star_ids, const int32_t* output_weights,
                    const SamplerConfig& cfg, uint64_t* input_masks, int32_t* target_cols,
                    int32_t* n_inputs, int32_t* n_targets, int threads);

// Pass 2: inputs (column order) at cu_inputs[i], targets at cu_targets[i]. Target
// errors are the label errors with NaN -> 0 (the authors' convention); errors may be
// null (then in_error must be null and target errors are 0).
void sample_fill(const float* values, const float* errors, int64_t n, int32_t v,
                 int32_t n_outputs, const uint64_t* input_masks, const int32_t* target_cols,
                 const int32_t* token_ids, Standardize standardize, const int32_t* cu_inputs,
                 const int32_t* cu_targets, int32_t* in_id, float* in_value, float* in_error,
                 int32_t* target_id, float* target_value, float* target_error, int threads);

}  // namespace lamfast
