#include "sampler.hpp"

#include <algorithm>
#include <vector>

#include "hash.hpp"
#include "parallel.hpp"

namespace lamfast {
namespace {

constexpr int64_t kRowsPerThread = 512;

// Bits needed to hold a column index 0..v-1.
inline uint64_t shuffle_column_bits(int32_t v) {
  uint64_t bits = 0;
  while ((int64_t(1) << bits) < v) ++bits;
  return bits;
}

inline float standardized(const Standardize& s, float x, int32_t c) {
  return s.center ? (x - s.center[c]) * s.inv_scale[c] : x;
}
inline float standardized_error(const Standardize& s, float e, int32_t c) {
  return s.center ? e * s.inv_scale[c] : e;
}

// Scratch for drawing one star at a time.
struct Drawer {
  const int32_t v, words;
  const int32_t* weights;
  const SamplerConfig& cfg;
  std::vector<uint64_t> present, output_list;
  const uint64_t column_bits;   // low bits of a shuffle key that hold its column
  std::vector<uint64_t> keys;    // shuffle keys: random high bits | column

  Drawer(int32_t v_, const int32_t* w, const SamplerConfig& c)
      : v(v_), words(mask_words(v_)), weights(w), cfg(c), present(words), output_list(words),
        column_bits(shuffle_column_bits(v_)) {
    for (int32_t i = 0; i < v; ++i)
      if (weights[i] > 0) output_list[i / 64] |= uint64_t(1) << (i % 64);
    keys.reserve(v);
  }

  // Returns true if the row holds an infinity (then nothing is drawn).
  bool draw(const float* row, const float* err, uint64_t star, uint64_t* inputs,
            int32_t* targets, int32_t& n_inputs, int32_t& n_targets) {
    if (presence_mask_checked(row, err, v, present.data())) return true;
    const uint64_t sk = star_key(cfg.seed, cfg.epoch, star);
    const int32_t n_valid = popcount(present.data(), words);
    const int32_t length = std::min(n_valid, cfg.context);
    const int32_t most_blank = std::min(cfg.max_blank, std::max(length - 1, 0));
    n_inputs = length - int32_t(slot_random(sk, v) % uint64_t(most_blank + 1));

    // Inputs = the n_inputs smallest shuffle keys. Keys are unique (they end in their
    // column), so one plain integer selection defines the order with no tie rule.
    if (n_inputs >= n_valid) {
      std::copy(present.begin(), present.end(), inputs);
    } else {
      std::fill(inputs, inputs + words, 0);
      keys.clear();
      for_each_set(present.data(), words, [&](int32_t c) {
        keys.push_back((slot_random(sk, uint64_t(c)) >> column_bits << column_bits) | uint64_t(c));
        return true;
      });
      std::nth_element(keys.begin(), keys.begin() + n_inputs, keys.end());
      const uint64_t column = (uint64_t(1) << column_bits) - 1;
      for (int32_t j = 0; j < n_inputs; ++j) {
        const uint64_t c = keys[j] & column;
        inputs[c / 64] |= uint64_t(1) << (c % 64);
      }
    }

    // Targets: sequential weighted draws without replacement, over column order.
    std::vector<uint64_t>& eligible = present;  // reused: presence is no longer needed
    int64_t total = 0;
    for (int32_t w = 0; w < words; ++w) {
      eligible[w] &= output_list[w] & (cfg.exclude_inputs ? ~inputs[w] : ~uint64_t(0));
    }
    for_each_set(eligible.data(), words, [&](int32_t c) {
      total += weights[c];
      return true;
    });
    n_targets = 0;
    for (int32_t j = 0; j < cfg.n_outputs; ++j) targets[j] = -1;
    for (int32_t j = 0; j < cfg.n_outputs && total > 0; ++j) {
      const uint64_t r = slot_random(sk, uint64_t(v) + 1 + j) % uint64_t(total);
      int64_t cumulative = 0;
      for_each_set(eligible.data(), words, [&](int32_t c) {
        cumulative += weights[c];
        if (uint64_t(cumulative) <= r) return true;
        targets[n_targets++] = c;
        eligible[c / 64] &= ~(uint64_t(1) << (c % 64));
        total -= weights[c];
        return false;
      });
    }
    return false;
  }
};

}  // namespace

BadCell sample_draw(const float* values, const float* errors, int64_t n, int32_t v,
                    const int64_t* star_ids, const int32_t* output_weights,
                    const SamplerConfig& cfg, uint64_t* input_masks, int32_t* target_cols,
                    int32_t* n_inputs, int32_t* n_targets, int threads) {
  std::vector<BadCell> found(std::max(threads, 1));
  const int32_t words = mask_words(v);
  parallel_for(n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int t) {
    Drawer d(v, output_weights, cfg);
    for (int64_t i = begin; i < end; ++i) {
      if (d.draw(values + i * v, errors ? errors + i * v : nullptr, uint64_t(star_ids[i]),
                 input_masks + i * words, target_cols + i * cfg.n_outputs, n_inputs[i],
                 n_targets[i])) {
        found[t] = find_inf(values, errors, i, end, v);
        return;
      }
    }
  });
  return first_of(found);
}

void sample_fill(const float* values, const float* errors, int64_t n, int32_t v,
                 int32_t n_outputs, const uint64_t* input_masks, const int32_t* target_cols,
                 const int32_t* token_ids, Standardize standardize, const int32_t* cu_inputs,
                 const int32_t* cu_targets, int32_t* in_id, float* in_value, float* in_error,
                 int32_t* target_id, float* target_value, float* target_error, int threads) {
  const int32_t words = mask_words(v);
  parallel_for(n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = values + i * v;
      const float* err = errors ? errors + i * v : nullptr;
      int64_t at = cu_inputs[i];
      for_each_set(input_masks + i * words, words, [&](int32_t c) {
        in_id[at] = token_ids[c];
        in_value[at] = standardized(standardize, row[c], c);
        if (in_error) in_error[at] = standardized_error(standardize, err[c], c);
        ++at;
        return true;
      });
      at = cu_targets[i];
      for (int32_t j = 0; j < cu_targets[i + 1] - cu_targets[i]; ++j, ++at) {
        const int32_t c = target_cols[i * n_outputs + j];
        const float e = err && err[c] == err[c] ? err[c] : 0.0f;
        target_id[at] = token_ids[c];
        target_value[at] = standardized(standardize, row[c], c);
        target_error[at] = standardized_error(standardize, e, c);
      }
    }
  });
}

}  // namespace lamfast
