#include "tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "hash.hpp"
#include "parallel.hpp"

namespace lamfast {
namespace {

constexpr int64_t kRowsPerThread = 4096;  // below this, threads cost more than they save

inline bool is_inf(float x) { return x == x && x - x != 0.0f; }

// Scans rows [begin, end) for +/-inf in values (then errors); first hit wins.
BadCell find_inf(const float* values, const float* errors, int64_t begin, int64_t end,
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

BadCell first_of(const std::vector<BadCell>& found) {
  for (const auto& b : found)  // threads own increasing row ranges
    if (b.row >= 0) return b;
  return {};
}

inline float standardized(const Standardize& s, float x, int32_t c) {
  return s.center ? (x - s.center[c]) * s.inv_scale[c] : x;
}
inline float standardized_error(const Standardize& s, float e, int32_t c) {
  return s.center ? e * s.inv_scale[c] : e;
}

}  // namespace

BadCell tokenize_count(const float* values, const float* errors, int64_t n, int32_t v,
                       int32_t max_tokens, int32_t* seqlens, int threads) {
  std::vector<BadCell> found(std::max(threads, 1));
  parallel_for(n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int t) {
    bool any_inf = false;
    for (int64_t i = begin; i < end; ++i) {
      const float* row = values + i * v;
      int32_t count = 0;
      bool inf = false;
      for (int32_t c = 0; c < v; ++c) {  // branch-free so it vectorises
        count += row[c] == row[c];
        inf |= is_inf(row[c]);
      }
      any_inf |= inf;
      seqlens[i] = std::min(count, max_tokens);
    }
    if (errors) {
      for (int64_t i = begin; i < end && !any_inf; ++i)
        for (int32_t c = 0; c < v; ++c) any_inf |= is_inf(errors[i * v + c]);
    }
    if (any_inf) found[t] = find_inf(values, errors, begin, end, v);
  });
  return first_of(found);
}

void tokenize_fill(const float* values, const float* errors, int64_t n, int32_t v,
                   const int32_t* token_ids, Standardize standardize,
                   const int32_t* cu_seqlens, int32_t* out_id, float* out_value,
                   float* out_error, int threads) {
  parallel_for(n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int) {
    // Branch-free compaction into a row buffer, then one copy: writing straight into
    // the output could spill one slot into a neighbour's star owned by another thread.
    std::vector<int32_t> col(v + 1);
    for (int64_t i = begin; i < end; ++i) {
      const float* row = values + i * v;
      int32_t k = 0;
      for (int32_t c = 0; c < v; ++c) {
        col[k] = c;
        k += row[c] == row[c];
      }
      const int64_t at = cu_seqlens[i];
      const int32_t len = cu_seqlens[i + 1] - cu_seqlens[i];  // <= k (max_tokens crop)
      for (int32_t j = 0; j < len; ++j) {
        const int32_t c = col[j];
        out_id[at + j] = token_ids[c];
        out_value[at + j] = standardized(standardize, row[c], c);
        if (out_error) out_error[at + j] = standardized_error(standardize, errors[i * v + c], c);
      }
    }
  });
}

namespace {

// One star's draw: which columns are inputs, which are targets (in draw order).
struct StarDraw {
  std::vector<std::pair<uint64_t, int32_t>> keys;  // (random key, column), valid only
  std::vector<uint8_t> is_input;                   // [V]
  std::vector<int32_t> targets;                    // columns, draw order
  int32_t n_inputs = 0;

  explicit StarDraw(int32_t v) : is_input(v) { keys.reserve(v); }

  void draw(const float* row, int32_t v, uint64_t star, const int32_t* weights,
            const SamplerConfig& cfg) {
    const uint64_t sk = star_key(cfg.seed, cfg.epoch, star);
    keys.clear();
    for (int32_t c = 0; c < v; ++c)
      if (row[c] == row[c]) keys.emplace_back(slot_random(sk, c), c);
    const int32_t n_valid = static_cast<int32_t>(keys.size());
    const int32_t length = std::min(n_valid, cfg.context);
    const int32_t most_blank = std::min(cfg.max_blank, std::max(length - 1, 0));
    const int32_t blank = static_cast<int32_t>(slot_random(sk, v) % uint64_t(most_blank + 1));
    n_inputs = length - blank;

    // Inputs: the n_inputs smallest keys = the first n_inputs of a random shuffle.
    std::fill(is_input.begin(), is_input.end(), 0);
    if (n_inputs >= n_valid) {
      for (const auto& kc : keys) is_input[kc.second] = 1;
    } else if (n_inputs > 0) {
      std::nth_element(keys.begin(), keys.begin() + n_inputs, keys.end());
      for (int32_t j = 0; j < n_inputs; ++j) is_input[keys[j].second] = 1;
    }

    // Targets: sequential weighted draws without replacement, over column order.
    targets.clear();
    if (cfg.n_outputs <= 0) return;
    int64_t total = 0;
    auto eligible = [&](int32_t c) {
      return row[c] == row[c] && weights[c] > 0 && !(cfg.exclude_inputs && is_input[c]);
    };
    for (int32_t c = 0; c < v; ++c)
      if (eligible(c)) total += weights[c];
    for (int32_t j = 0; j < cfg.n_outputs && total > 0; ++j) {
      const uint64_t r = slot_random(sk, uint64_t(v) + 1 + j) % uint64_t(total);
      int64_t cumulative = 0;
      for (int32_t c = 0; c < v; ++c) {
        if (!eligible(c) || std::find(targets.begin(), targets.end(), c) != targets.end())
          continue;
        cumulative += weights[c];
        if (uint64_t(cumulative) > r) {
          targets.push_back(c);
          total -= weights[c];
          break;
        }
      }
    }
  }
};

}  // namespace

BadCell sample_count(const float* values, const float* errors, int64_t n, int32_t v,
                     const int64_t* star_ids, const int32_t* output_weights,
                     const SamplerConfig& cfg, int32_t* n_inputs, int32_t* n_targets,
                     int threads) {
  std::vector<BadCell> found(std::max(threads, 1));
  parallel_for(n, threads, kRowsPerThread / 8, [&](int64_t begin, int64_t end, int t) {
    found[t] = find_inf(values, errors, begin, end, v);
    if (found[t].row >= 0) return;
    StarDraw d(v);
    for (int64_t i = begin; i < end; ++i) {
      d.draw(values + i * v, v, uint64_t(star_ids[i]), output_weights, cfg);
      n_inputs[i] = d.n_inputs;
      n_targets[i] = static_cast<int32_t>(d.targets.size());
    }
  });
  return first_of(found);
}

void sample_fill(const float* values, const float* errors, int64_t n, int32_t v,
                 const int64_t* star_ids, const int32_t* output_weights,
                 const SamplerConfig& cfg, const int32_t* token_ids,
                 Standardize standardize, const int32_t* cu_inputs,
                 const int32_t* cu_targets, int32_t* in_id, float* in_value,
                 float* in_error, int32_t* target_id, float* target_value,
                 float* target_error, int threads) {
  parallel_for(n, threads, kRowsPerThread / 8, [&](int64_t begin, int64_t end, int) {
    StarDraw d(v);
    for (int64_t i = begin; i < end; ++i) {
      const float* row = values + i * v;
      const float* err = errors ? errors + i * v : nullptr;
      d.draw(row, v, uint64_t(star_ids[i]), output_weights, cfg);
      int64_t at = cu_inputs[i];
      for (int32_t c = 0; c < v; ++c) {
        if (!d.is_input[c]) continue;
        in_id[at] = token_ids[c];
        in_value[at] = standardized(standardize, row[c], c);
        if (in_error) in_error[at] = standardized_error(standardize, err[c], c);
        ++at;
      }
      at = cu_targets[i];
      for (int32_t c : d.targets) {
        target_id[at] = token_ids[c];
        target_value[at] = standardized(standardize, row[c], c);
        const float e = err && err[c] == err[c] ? err[c] : 0.0f;
        target_error[at] = standardized_error(standardize, e, c);
        ++at;
      }
    }
  });
}

}  // namespace lamfast
