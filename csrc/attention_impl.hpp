// The CPU attention kernels, compiled once per instruction set: attention.cpp includes
// them for the baseline target and attention_avx2.cpp for AVX2+FMA, each inside its own
// namespace LAMFAST_ATTENTION_ISA; attention.cpp picks one at run time.
//
// One task = one set, all heads, nothing padded or gathered in memory: per head the set's
// keys are copied into small scratch tiles (transposed for the score loop over keys, rows
// for the loops over dims). Head dims 4, 8, 12, 16, 24, 32, 48, 64 are compile-time constants so loops over
// dims unroll into whole vectors; key loops run over a multiple of 8 keys (the extra
// keys are zero and get probability exactly 0).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attention.hpp"
#include "parallel.hpp"

#ifndef LAMFAST_ATTENTION_ISA
#error "define LAMFAST_ATTENTION_ISA (a namespace name) before including attention_impl.hpp"
#endif

namespace lamfast {
namespace LAMFAST_ATTENTION_ISA {
namespace {

// exp(x) for x <= 0 (scores minus their row maximum or log-sum-exp), branch-free so loops
// over keys vectorise: Cephes' expf range reduction and polynomial (relative error
// ~2e-7), 2^n from the exponent bits; x < -87 gives exactly 0.
inline float exp_nonpositive(float x) {
  const float xc = std::max(x, -87.0f);
  const float magic = 12582912.0f;  // 1.5 * 2^23: (t + magic) - magic rounds t to nearest
  const float n = (xc * 1.44269504088896341f + magic) - magic;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  bits = x < -87.0f ? 0 : bits;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

// s[j] = exp(s[j] - shift) for the nkt real keys, 0 for the padding keys up to nkp.
inline void exp_shifted(float* __restrict s, int64_t nkt, int64_t nkp, float shift) {
  for (int64_t j = nkt; j < nkp; ++j) s[j] = shift - 1000.0f;
  for (int64_t j = 0; j < nkp; ++j) s[j] = exp_nonpositive(s[j] - shift);
}

constexpr int64_t kKeyBlock = 8;  // key loops run over multiples of this

inline int64_t round_up(int64_t n) { return (n + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }

// Per-thread scratch, grown on demand and reused across sets.
struct Scratch {
  std::vector<float> kt, vt, kr, vr, gk, gv, s, p;
  void fit(int64_t nkp, int64_t d) {
    const size_t n = static_cast<size_t>(nkp * d);
    for (auto* v : {&kt, &vt, &kr, &vr, &gk, &gv})
      if (v->size() < n) v->resize(n);
    for (auto* v : {&s, &p})
      if (v->size() < static_cast<size_t>(nkp)) v->resize(nkp);
  }
};

// Head h's keys of one set, the bias slot as key nk, zeros up to nkp keys: transposed
// [D][nkp] into t (if given) and as rows [nkp][D] into r (if given).
template <int D>
void load_keys(const float* src, int64_t stride, const float* bias, int64_t nk, int64_t nkp,
               float* __restrict t, float* __restrict r) {
  const int64_t nkt = nk + (bias ? 1 : 0);
  for (int64_t j = 0; j < nkp; ++j) {
    const float* x = j < nk ? src + j * stride : (j < nkt ? bias : nullptr);
    for (int c = 0; c < D; ++c) {
      const float value = x ? x[c] : 0.0f;
      if (t) t[c * nkp + j] = value;
      if (r) r[j * D + c] = value;
    }
  }
}

// s[j] = scale * (x . key_j) for all nkp keys, from transposed keys kt [D][nkp].
template <int D>
inline void dot_keys(const float* __restrict x, const float* __restrict kt, int64_t nkp,
                     float scale, float* __restrict s) {
  for (int64_t j = 0; j < nkp; ++j) s[j] = 0.0f;
  for (int c = 0; c < D; ++c) {
    const float xc = x[c] * scale;
    const float* __restrict kc = kt + c * nkp;
    for (int64_t j = 0; j < nkp; ++j) s[j] += xc * kc[j];
  }
}

template <int D>
void forward_set(const VarlenSets& sets, const Strides& st, int64_t b, const float* q,
                 const float* k, const float* v, const float* bias_k, const float* bias_v,
                 float scale, float* out, float* lse, Scratch& w) {
  const int64_t heads = sets.heads;
  const int64_t q0 = sets.cu_q[b], nq = sets.cu_q[b + 1] - q0;
  const int64_t k0 = sets.cu_k[b], nk = sets.cu_k[b + 1] - k0;
  const int64_t nkt = nk + (bias_k ? 1 : 0), nkp = round_up(nkt);
  if (nq == 0) return;
  if (nkt == 0) {  // nothing to attend to: zeros
    for (int64_t i = 0; i < nq; ++i) {
      std::fill(out + (q0 + i) * heads * D, out + (q0 + i + 1) * heads * D, 0.0f);
      std::fill(lse + (q0 + i) * heads, lse + (q0 + i + 1) * heads, 0.0f);
    }
    return;
  }
  w.fit(nkp, D);
  float* __restrict kt = w.kt.data();
  float* __restrict vr = w.vr.data();
  float* __restrict s = w.s.data();
  for (int64_t h = 0; h < heads; ++h) {
    load_keys<D>(k + k0 * st.k + h * D, st.k, bias_k ? bias_k + h * D : nullptr, nk, nkp, kt,
                 nullptr);
    load_keys<D>(v + k0 * st.v + h * D, st.v, bias_v ? bias_v + h * D : nullptr, nk, nkp,
                 nullptr, vr);
    for (int64_t i = 0; i < nq; ++i) {
      dot_keys<D>(q + (q0 + i) * st.q + h * D, kt, nkp, scale, s);
      float m = s[0];
      for (int64_t j = 1; j < nkt; ++j) m = std::max(m, s[j]);
      exp_shifted(s, nkt, nkp, m);
      float sum = 0.0f;
      for (int64_t j = 0; j < nkt; ++j) sum += s[j];
      float o[D] = {};
      for (int64_t j = 0; j < nkt; ++j) {
        const float pj = s[j];
        for (int c = 0; c < D; ++c) o[c] += pj * vr[j * D + c];
      }
      const float inv = 1.0f / sum;
      float* dst = out + ((q0 + i) * heads + h) * D;
      for (int c = 0; c < D; ++c) dst[c] = o[c] * inv;
      lse[(q0 + i) * heads + h] = m + std::log(sum);
    }
  }
}

template <int D>
void backward_set(const VarlenSets& sets, const Strides& st, int64_t b, const float* dout,
                  const float* q, const float* k, const float* v, const float* out,
                  const float* lse, const float* bias_k, const float* bias_v, float scale,
                  float* dq, float* dk, float* dv, float* dbias_k, float* dbias_v, Scratch& w) {
  const int64_t heads = sets.heads, row = heads * D;
  const int64_t q0 = sets.cu_q[b], nq = sets.cu_q[b + 1] - q0;
  const int64_t k0 = sets.cu_k[b], nk = sets.cu_k[b + 1] - k0;
  const int64_t nkt = nk + (bias_k ? 1 : 0), nkp = round_up(nkt);
  if (nq == 0 || nkt == 0) {  // nothing attends, or nothing to attend to: zero gradients
    std::fill(dq + q0 * row, dq + (q0 + nq) * row, 0.0f);
    std::fill(dk + k0 * row, dk + (k0 + nk) * row, 0.0f);
    std::fill(dv + k0 * row, dv + (k0 + nk) * row, 0.0f);
    return;
  }
  w.fit(nkp, D);
  float* __restrict kt = w.kt.data();
  float* __restrict kr = w.kr.data();
  float* __restrict vt = w.vt.data();
  float* __restrict s = w.s.data();
  float* __restrict p = w.p.data();
  float* __restrict gk = w.gk.data();
  float* __restrict gv = w.gv.data();
  for (int64_t h = 0; h < heads; ++h) {
    load_keys<D>(k + k0 * st.k + h * D, st.k, bias_k ? bias_k + h * D : nullptr, nk, nkp, kt,
                 kr);
    load_keys<D>(v + k0 * st.v + h * D, st.v, bias_v ? bias_v + h * D : nullptr, nk, nkp, vt,
                 nullptr);
    std::fill(gk, gk + nkt * D, 0.0f);
    std::fill(gv, gv + nkt * D, 0.0f);
    for (int64_t i = 0; i < nq; ++i) {
      const float* __restrict qi = q + (q0 + i) * st.q + h * D;
      const float* __restrict gi = dout + ((q0 + i) * heads + h) * D;
      const float* __restrict oi = out + ((q0 + i) * heads + h) * D;
      dot_keys<D>(qi, kt, nkp, scale, s);
      const float l = lse[(q0 + i) * heads + h];
      for (int64_t j = 0; j < nkp; ++j) p[j] = s[j];
      exp_shifted(p, nkt, nkp, l);
      dot_keys<D>(gi, vt, nkp, 1.0f, s);  // s_j = dP_j = dO . v_j
      float delta = 0.0f;
      for (int c = 0; c < D; ++c) delta += gi[c] * oi[c];
      for (int64_t j = 0; j < nkp; ++j) s[j] = p[j] * (s[j] - delta) * scale;  // dS * scale
      float gq[D] = {};
      for (int64_t j = 0; j < nkt; ++j) {
        const float dsj = s[j], pj = p[j];
        for (int c = 0; c < D; ++c) {
          gq[c] += dsj * kr[j * D + c];
          gk[j * D + c] += dsj * qi[c];
          gv[j * D + c] += pj * gi[c];
        }
      }
      float* dst = dq + ((q0 + i) * heads + h) * D;
      for (int c = 0; c < D; ++c) dst[c] = gq[c];
    }
    for (int64_t j = 0; j < nk; ++j) {
      const int64_t at = ((k0 + j) * heads + h) * D;
      for (int c = 0; c < D; ++c) {
        dk[at + c] = gk[j * D + c];
        dv[at + c] = gv[j * D + c];
      }
    }
    if (bias_k) {
      for (int c = 0; c < D; ++c) {
        dbias_k[h * D + c] += gk[nk * D + c];
        dbias_v[h * D + c] += gv[nk * D + c];
      }
    }
  }
}

// Sets per thread below which one thread does all (thread start-up costs ~20 us).
constexpr int64_t kMinSetsPerThread = 16;

template <int D>
void forward_all(const VarlenSets& sets, const Strides& st, const float* q, const float* k,
                 const float* v, const float* bias_k, const float* bias_v, float scale,
                 float* out, float* lse, int threads) {
  parallel_for(sets.n_sets, threads, kMinSetsPerThread, [&](int64_t begin, int64_t end, int) {
    Scratch w;
    for (int64_t b = begin; b < end; ++b)
      forward_set<D>(sets, st, b, q, k, v, bias_k, bias_v, scale, out, lse, w);
  });
}

template <int D>
void backward_all(const VarlenSets& sets, const Strides& st, const float* dout, const float* q,
                  const float* k, const float* v, const float* out, const float* lse,
                  const float* bias_k, const float* bias_v, float scale, float* dq, float* dk,
                  float* dv, float* partial_bias, int threads) {
  const int64_t hd = sets.heads * D;
  parallel_for(sets.n_sets, threads, kMinSetsPerThread, [&](int64_t begin, int64_t end, int t) {
    Scratch w;
    float* pk = bias_k ? partial_bias + 2 * t * hd : nullptr;
    for (int64_t b = begin; b < end; ++b)
      backward_set<D>(sets, st, b, dout, q, k, v, out, lse, bias_k, bias_v, scale, dq, dk, dv,
                      pk, pk ? pk + hd : nullptr, w);
  });
}

}  // namespace

// Entry points of this instruction set: dispatch on the head dim (4..64 specialised).
bool forward(const VarlenSets& sets, const Strides& st, const float* q, const float* k,
             const float* v, const float* bias_k, const float* bias_v, float scale, float* out,
             float* lse, int threads) {
  switch (sets.head_dim) {
#define LAMFAST_CASE(D) \
  case D: forward_all<D>(sets, st, q, k, v, bias_k, bias_v, scale, out, lse, threads); return true;
    LAMFAST_CASE(4) LAMFAST_CASE(8) LAMFAST_CASE(12) LAMFAST_CASE(16)
    LAMFAST_CASE(24) LAMFAST_CASE(32) LAMFAST_CASE(48) LAMFAST_CASE(64)
#undef LAMFAST_CASE
    default: return false;
  }
}

bool backward(const VarlenSets& sets, const Strides& st, const float* dout, const float* q,
              const float* k, const float* v, const float* out, const float* lse,
              const float* bias_k, const float* bias_v, float scale, float* dq, float* dk,
              float* dv, float* partial_bias, int threads) {
  switch (sets.head_dim) {
#define LAMFAST_CASE(D)                                                                     \
  case D:                                                                                   \
    backward_all<D>(sets, st, dout, q, k, v, out, lse, bias_k, bias_v, scale, dq, dk, dv,   \
                    partial_bias, threads);                                                 \
    return true;
    LAMFAST_CASE(4) LAMFAST_CASE(8) LAMFAST_CASE(12) LAMFAST_CASE(16)
    LAMFAST_CASE(24) LAMFAST_CASE(32) LAMFAST_CASE(48) LAMFAST_CASE(64)
#undef LAMFAST_CASE
    default: return false;
  }
}

}  // namespace LAMFAST_ATTENTION_ISA
}  // namespace lamfast
