// The CPU attention kernels, compiled once per instruction set: attention.cpp includes
// them for the baseline target and attention_avx2.cpp for AVX2+FMA, each inside its own
// namespace LAMFAST_ATTENTION_ISA; attention.cpp picks one at run time.
//
// One task = one set, all heads, nothing padded or gathered in memory: per head the set's
// keys are copied into small scratch tiles (transposed for the score loop over keys, rows
// for the loops over dims). Head dims 4, 8, 12, 16, 24, 32, 48, 64 are compile-time
// constants so loops over dims unroll into whole vectors; key loops run over blocks of 8
// keys written with GCC/Clang vector types (one AVX2 register, two SSE2 ones), so they
// vectorise whatever the optimiser decides; the padding keys get probability exactly 0.
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

constexpr int64_t kKeyBlock = 8;  // key loops run over whole blocks of this many keys

typedef float f8 __attribute__((vector_size(32)));    // one block of keys
typedef int32_t i8 __attribute__((vector_size(32)));

inline f8 load8(const float* p) {  // unaligned
  f8 x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

inline void store8(float* p, f8 x) { std::memcpy(p, &x, sizeof x); }

inline float hmax(f8 x) {
  float r = x[0];
  for (int l = 1; l < kKeyBlock; ++l) r = std::max(r, x[l]);
  return r;
}

inline float hsum(f8 x) {
  float r = x[0];
  for (int l = 1; l < kKeyBlock; ++l) r += x[l];
  return r;
}

// exp(x) for x <= 0 (scores minus their row maximum or log-sum-exp): Cephes' expf range
// reduction and polynomial (relative error ~2e-7), 2^n from the exponent bits;
// x < -87 gives exactly 0.
inline f8 exp_nonpositive(f8 x) {
  const f8 xc = x < -87.0f ? f8{} - 87.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: (t + magic) - magic rounds t to nearest
  const f8 n = (xc * 1.44269504088896341f + magic) - magic;
  f8 r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  f8 p = f8{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  i8 bits = (__builtin_convertvector(n, i8) + 127) << 23;
  bits = x < -87.0f ? i8{} : bits;
  return p * (f8)bits;  // a vector cast keeps the bits
}

// Padding keys past the nkt real ones get this score: exp maps it to exactly 0.
constexpr float kNoKey = -1e30f;

// s[j] = exp(s[j] - shift) for the nkt real keys, 0 for the padding keys up to nkp.
inline void exp_shifted(float* __restrict s, int64_t nkt, int64_t nkp, float shift) {
  for (int64_t j = nkt; j < nkp; ++j) s[j] = kNoKey;
  for (int64_t j = 0; j < nkp; j += kKeyBlock) store8(s + j, exp_nonpositive(load8(s + j) - shift));
}


inline int64_t round_up(int64_t n) { return (n + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }

// Per-thread scratch, grown on demand and reused across sets.
struct Scratch {
  std::vector<float> kt, vt, kr, vr, gk, gv, s, p;
  void fit(int64_t nkp, int64_t d, int64_t queries) {  // queries: rows of s and p
    const size_t n = static_cast<size_t>(nkp * d);
    for (auto* v : {&kt, &vt, &kr, &vr, &gk, &gv})
      if (v->size() < n) v->resize(n);
    for (auto* v : {&s, &p})
      if (v->size() < static_cast<size_t>(nkp * queries)) v->resize(nkp * queries);
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
  float xs[D];
  for (int c = 0; c < D; ++c) xs[c] = x[c] * scale;
  for (int64_t j = 0; j < nkp; j += kKeyBlock) {
    f8 acc = xs[0] * load8(kt + j);
    for (int c = 1; c < D; ++c) acc += xs[c] * load8(kt + c * nkp + j);
    store8(s + j, acc);
  }
}

// Queries handled together: their accumulators are independent FMA chains, which hides
// the FMA latency that one query's chain of keys would expose; bounded so that the
// accumulators stay in the 16 vector registers of AVX2.
template <int D>
constexpr int kQueryBlock = D <= 8 ? 4 : (D <= 16 ? 2 : 1);

inline float row_max(const float* __restrict s, int64_t nkp) {
  f8 m = load8(s);
  for (int64_t j = kKeyBlock; j < nkp; j += kKeyBlock) {
    const f8 x = load8(s + j);
    m = x > m ? x : m;
  }
  return hmax(m);
}

inline float row_sum(const float* __restrict s, int64_t nkp) {
  f8 a = load8(s);
  for (int64_t j = kKeyBlock; j < nkp; j += kKeyBlock) a += load8(s + j);
  return hsum(a);
}

// NQ queries (rows i0.. of the set) of head h against keys kt [D][nkp] / vr [nkp][D].
template <int D, int NQ>
void forward_queries(const float* q, int64_t q_stride, float* out, float* lse, int64_t heads,
                     const float* __restrict kt, const float* __restrict vr, int64_t nkt,
                     int64_t nkp, float scale, float* __restrict s) {
  float m[NQ], inv[NQ];
  for (int i = 0; i < NQ; ++i) {
    float* si = s + i * nkp;
    dot_keys<D>(q + i * q_stride, kt, nkp, scale, si);
    for (int64_t j = nkt; j < nkp; ++j) si[j] = kNoKey;
    m[i] = row_max(si, nkp);
    for (int64_t j = 0; j < nkp; j += kKeyBlock)
      store8(si + j, exp_nonpositive(load8(si + j) - m[i]));
    const float sum = row_sum(si, nkp);
    inv[i] = 1.0f / sum;
    lse[i * heads] = m[i] + std::log(sum);
  }
  float o[NQ][D] = {};
  for (int64_t j = 0; j < nkt; ++j) {
    const float* __restrict vj = vr + j * D;
    for (int i = 0; i < NQ; ++i) {
      const float p = s[i * nkp + j];
      for (int c = 0; c < D; ++c) o[i][c] += p * vj[c];
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < D; ++c) out[i * heads * D + c] = o[i][c] * inv[i];
}

template <int D>
void forward_set(const VarlenSets& sets, const Strides& st, int64_t b, const float* q,
                 const float* k, const float* v, const float* bias_k, const float* bias_v,
                 float scale, float* out, float* lse, Scratch& w) {
  constexpr int NQ = kQueryBlock<D>;
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
  w.fit(nkp, D, NQ);
  float* __restrict kt = w.kt.data();
  float* __restrict vr = w.vr.data();
  for (int64_t h = 0; h < heads; ++h) {
    load_keys<D>(k + k0 * st.k + h * D, st.k, bias_k ? bias_k + h * D : nullptr, nk, nkp, kt,
                 nullptr);
    load_keys<D>(v + k0 * st.v + h * D, st.v, bias_v ? bias_v + h * D : nullptr, nk, nkp,
                 nullptr, vr);
    int64_t i = 0;
    for (; i + NQ <= nq; i += NQ)
      forward_queries<D, NQ>(q + (q0 + i) * st.q + h * D, st.q, out + ((q0 + i) * heads + h) * D,
                             lse + (q0 + i) * heads + h, heads, kt, vr, nkt, nkp, scale,
                             w.s.data());
    for (; i < nq; ++i)
      forward_queries<D, 1>(q + (q0 + i) * st.q + h * D, st.q, out + ((q0 + i) * heads + h) * D,
                            lse + (q0 + i) * heads + h, heads, kt, vr, nkt, nkp, scale,
                            w.s.data());
  }
}

// NQ queries of head h: their dQ rows, and their contributions added to gk, gv [nkt][D].
template <int D, int NQ>
void backward_queries(const float* q, int64_t q_stride, const float* dout, const float* out,
                      const float* lse, int64_t heads, float* dq, const float* __restrict kt,
                      const float* __restrict kr, const float* __restrict vt, int64_t nkt,
                      int64_t nkp, float scale, float* __restrict p, float* __restrict s,
                      float* __restrict gk, float* __restrict gv) {
  const int64_t row = heads * D;
  for (int i = 0; i < NQ; ++i) {
    const float* gi = dout + i * row;
    const float* oi = out + i * row;
    float* pi = p + i * nkp;
    float* si = s + i * nkp;
    dot_keys<D>(q + i * q_stride, kt, nkp, scale, pi);
    exp_shifted(pi, nkt, nkp, lse[i * heads]);
    dot_keys<D>(gi, vt, nkp, 1.0f, si);  // s_j = dP_j = dO . v_j
    float delta = 0.0f;
    for (int c = 0; c < D; ++c) delta += gi[c] * oi[c];
    for (int64_t j = 0; j < nkp; ++j) si[j] = pi[j] * (si[j] - delta) * scale;  // dS * scale
  }
  float gq[NQ][D] = {};
  for (int64_t j = 0; j < nkt; ++j) {
    const float* __restrict kj = kr + j * D;
    float* __restrict gkj = gk + j * D;
    float* __restrict gvj = gv + j * D;
    for (int i = 0; i < NQ; ++i) {
      const float dsj = s[i * nkp + j], pj = p[i * nkp + j];
      const float* __restrict qi = q + i * q_stride;
      const float* __restrict gi = dout + i * row;
      for (int c = 0; c < D; ++c) {
        gq[i][c] += dsj * kj[c];
        gkj[c] += dsj * qi[c];
        gvj[c] += pj * gi[c];
      }
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < D; ++c) dq[i * row + c] = gq[i][c];
}

template <int D>
void backward_set(const VarlenSets& sets, const Strides& st, int64_t b, const float* dout,
                  const float* q, const float* k, const float* v, const float* out,
                  const float* lse, const float* bias_k, const float* bias_v, float scale,
                  float* dq, float* dk, float* dv, float* dbias_k, float* dbias_v, Scratch& w) {
  constexpr int NQ = kQueryBlock<D>;
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
  w.fit(nkp, D, NQ);
  float* __restrict kt = w.kt.data();
  float* __restrict kr = w.kr.data();
  float* __restrict vt = w.vt.data();
  float* __restrict gk = w.gk.data();
  float* __restrict gv = w.gv.data();
  for (int64_t h = 0; h < heads; ++h) {
    load_keys<D>(k + k0 * st.k + h * D, st.k, bias_k ? bias_k + h * D : nullptr, nk, nkp, kt,
                 kr);
    load_keys<D>(v + k0 * st.v + h * D, st.v, bias_v ? bias_v + h * D : nullptr, nk, nkp, vt,
                 nullptr);
    std::fill(gk, gk + nkt * D, 0.0f);
    std::fill(gv, gv + nkt * D, 0.0f);
    const auto at = [&](int64_t i) { return (q0 + i) * row + h * D; };  // [Tq, H, D] offset
    int64_t i = 0;
    for (; i + NQ <= nq; i += NQ)
      backward_queries<D, NQ>(q + (q0 + i) * st.q + h * D, st.q, dout + at(i), out + at(i),
                              lse + (q0 + i) * heads + h, heads, dq + at(i), kt, kr, vt, nkt,
                              nkp, scale, w.p.data(), w.s.data(), gk, gv);
    for (; i < nq; ++i)
      backward_queries<D, 1>(q + (q0 + i) * st.q + h * D, st.q, dout + at(i), out + at(i),
                             lse + (q0 + i) * heads + h, heads, dq + at(i), kt, kr, vt, nkt,
                             nkp, scale, w.p.data(), w.s.data(), gk, gv);
    for (int64_t j = 0; j < nk; ++j) {
      const int64_t to = ((k0 + j) * heads + h) * D;
      for (int c = 0; c < D; ++c) {
        dk[to + c] = gk[j * D + c];
        dv[to + c] = gv[j * D + c];
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
