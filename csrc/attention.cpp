// Run-time choice between the AVX2+FMA build of the kernels (attention_avx2.cpp) and the
// baseline build (here), then the shared bias-gradient reduction.
#define LAMFAST_ATTENTION_ISA baseline
#include "attention_impl.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace lamfast {

#if defined(LAMFAST_HAVE_AVX2)
namespace avx2 {
bool forward(const VarlenSets&, const Strides&, const float*, const float*, const float*,
             const float*, const float*, float, float*, float*, int);
bool backward(const VarlenSets&, const Strides&, const float*, const float*, const float*,
              const float*, const float*, const float*, const float*, const float*, float,
              float*, float*, float*, float*, int);
}  // namespace avx2

static bool use_avx2() {
  static const bool yes = [] {
    const char* forced = std::getenv("LAMFAST_CPU_ISA");
    if (forced && std::strcmp(forced, "baseline") == 0) return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}
#endif

const char* attention_isa() {
#if defined(LAMFAST_HAVE_AVX2)
  if (use_avx2()) return "avx2";
#endif
  return "baseline";
}

bool attention_supports(int64_t head_dim) {
  switch (head_dim) {
    case 4: case 8: case 12: case 16: case 24: case 32: case 48: case 64: return true;
    default: return false;
  }
}

void attention_forward(const VarlenSets& sets, const Strides& strides, const float* q,
                       const float* k, const float* v, const float* bias_k,
                       const float* bias_v, float scale, float* out, float* lse, int threads) {
  bool done;
#if defined(LAMFAST_HAVE_AVX2)
  if (use_avx2())
    done = avx2::forward(sets, strides, q, k, v, bias_k, bias_v, scale, out, lse, threads);
  else
#endif
    done = baseline::forward(sets, strides, q, k, v, bias_k, bias_v, scale, out, lse, threads);
  if (!done) throw std::invalid_argument("attention: no CPU kernel for this head_dim");
}

void attention_backward(const VarlenSets& sets, const Strides& strides, const float* dout,
                        const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* bias_k, const float* bias_v,
                        float scale, float* dq, float* dk, float* dv, float* dbias_k,
                        float* dbias_v, int threads) {
  const int64_t hd = sets.heads * sets.head_dim;
  const int t = std::max(1, threads);
  // One partial bias gradient per thread, summed in thread order: deterministic.
  std::vector<float> partial(bias_k ? static_cast<size_t>(2 * t * hd) : 0, 0.0f);
  bool done;
#if defined(LAMFAST_HAVE_AVX2)
  if (use_avx2())
    done = avx2::backward(sets, strides, dout, q, k, v, out, lse, bias_k, bias_v, scale, dq, dk,
                          dv, partial.data(), t);
  else
#endif
    done = baseline::backward(sets, strides, dout, q, k, v, out, lse, bias_k, bias_v, scale, dq,
                              dk, dv, partial.data(), t);
  if (!done) throw std::invalid_argument("attention: no CPU kernel for this head_dim");
  if (bias_k) {
    std::fill(dbias_k, dbias_k + hd, 0.0f);
    std::fill(dbias_v, dbias_v + hd, 0.0f);
    for (int i = 0; i < t; ++i)
      for (int64_t c = 0; c < hd; ++c) {
        dbias_k[c] += partial[2 * i * hd + c];
        dbias_v[c] += partial[(2 * i + 1) * hd + c];
      }
  }
}

}  // namespace lamfast
