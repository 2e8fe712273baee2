// Presence bitmasks of catalogue rows: bit c of mask[c / 64] is set where row[c] is not
// NaN. Iterating set bits touches only present cells, so sparse rows cost little.
#pragma once
#include <algorithm>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lamfast {

inline bool is_inf(float x) { return x == x && x - x != 0.0f; }

inline int32_t mask_words(int32_t v) { return (v + 63) / 64; }

// Fills mask[0 .. mask_words(v)); returns true if a present cell is +/-inf.
inline bool presence_mask(const float* row, int32_t v, uint64_t* mask) {
  bool inf = false;
  for (int32_t w = 0, base = 0; base < v; ++w, base += 64) {
    const int32_t n = std::min<int32_t>(64, v - base);
    const float* x = row + base;
    uint64_t bits = 0;
    int32_t c = 0;
#if defined(__SSE2__)
    __m128 infinite = _mm_setzero_ps();
    for (; c + 4 <= n; c += 4) {
      const __m128 a = _mm_loadu_ps(x + c);
      const __m128 present = _mm_cmpord_ps(a, a);
      const __m128 d = _mm_sub_ps(a, a);  // NaN for NaN and +/-inf, 0 otherwise
      infinite = _mm_or_ps(infinite, _mm_andnot_ps(_mm_cmpord_ps(d, d), present));
      bits |= uint64_t(_mm_movemask_ps(present)) << c;
    }
    inf |= _mm_movemask_ps(infinite) != 0;
#endif
    for (; c < n; ++c) {
      bits |= uint64_t(x[c] == x[c]) << c;
      inf |= is_inf(x[c]);
    }
    mask[w] = bits;
  }
  return inf;
}

inline int32_t popcount(const uint64_t* mask, int32_t words) {
  int32_t n = 0;
  for (int32_t w = 0; w < words; ++w) n += __builtin_popcountll(mask[w]);
  return n;
}

// Calls f(c) for set bits in increasing c until f returns false.
template <class F>
inline void for_each_set(const uint64_t* mask, int32_t words, F&& f) {
  for (int32_t w = 0; w < words; ++w)
    for (uint64_t bits = mask[w]; bits; bits &= bits - 1)
      if (!f(w * 64 + __builtin_ctzll(bits))) return;
}

}  // namespace lamfast
