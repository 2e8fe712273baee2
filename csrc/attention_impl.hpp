// The CPU attention kernels, compiled once per instruction set: attention.cpp includes
// them for the baseline target (SSE2), attention_avx2.cpp for AVX2+FMA and
// attention_avx512.cpp for AVX-512, each inside its own namespace LAMFAST_ATTENTION_ISA
// and with LAMFAST_ATTENTION_REGISTER_LANES floats to a vector register; attention.cpp
// picks one at run time.
//
// One task = one set, all heads, nothing padded or gathered in memory: per head the set's
// keys are copied into small scratch tiles (transposed for the score loop over keys, rows
// for the loops over dims). Head dims 4, 8, 12, 16, 24, 32, 48, 64 are compile-time
// constants. Loops over keys run over blocks of 8 or 16 keys and loops over dims over
// whole vectors of 4, 8 or 16 dims, written with GCC/Clang vector types so that they
// vectorise whatever the optimiser decides; the padding keys get probability exactly 0.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "attention_kernels.hpp"

#if !defined(LAMFAST_ATTENTION_ISA) || !defined(LAMFAST_ATTENTION_REGISTER_LANES)
#error "define LAMFAST_ATTENTION_ISA (a namespace name) and LAMFAST_ATTENTION_REGISTER_LANES (floats to a vector register: 4, 8 or 16)"
#endif

namespace lamfast {
namespace LAMFAST_ATTENTION_ISA {
namespace {

constexpr int kRegisterLanes = LAMFAST_ATTENTION_REGISTER_LANES;
constexpr int kRegisters = kRegisterLanes == 16 ? 32 : 16;  // vector registers: AVX-512 32, else 16

template <int W> struct Lanes;  // W floats as one vector value
template <> struct Lanes<4> { typedef float type __attribute__((vector_size(16))); };
template <> struct Lanes<8> { typedef float type __attribute__((vector_size(32))); };
template <> struct Lanes<16> { typedef float type __attribute__((vector_size(64))); };
template <int W> struct IntLanes;  // W int32 as one vector value
template <> struct IntLanes<8> { typedef int32_t type __attribute__((vector_size(32))); };
template <> struct IntLanes<16> { typedef int32_t type __attribute__((vector_size(64))); };

template <class V>
inline V load(const float* p) {  // unaligned
  V x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

template <class V>
inline void store(float* p, V x) { std::memcpy(p, &x, sizeof x); }

// The forward's element types: float, or bf16 (inference on bf16 activations; computed in
// float inside). bf16 results are rounded to nearest even, NaN kept a NaN.
inline float to_float(float x) { return x; }
inline float to_float(bf16 x) {
  const uint32_t bits = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <int W, class V>
inline void store_as(float* p, V x) { store(p, x); }
template <int W, class V>
inline void store_as(bf16* p, V x) {
  for (int l = 0; l < W; ++l) {
    uint32_t bits;
    const float f = x[l];
    std::memcpy(&bits, &f, sizeof bits);
    bits = f != f ? 0x7fc00000u : bits + 0x7fffu + ((bits >> 16) & 1u);
    p[l].bits = static_cast<uint16_t>(bits >> 16);
  }
}

// Halves of a vector of W lanes, reduced down to one float (a tree: log2(W) steps).
template <int W>
inline float hmax(typename Lanes<W>::type x) {
  if constexpr (W == 4) {
    return std::max(std::max(x[0], x[1]), std::max(x[2], x[3]));
  } else {
    typedef typename Lanes<W / 2>::type half;
    half lo, hi;
    std::memcpy(&lo, &x, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&x) + sizeof lo, sizeof hi);
    return hmax<W / 2>(lo > hi ? lo : hi);
  }
}

template <int W>
inline float hsum(typename Lanes<W>::type x) {
  if constexpr (W == 4) {
    return (x[0] + x[2]) + (x[1] + x[3]);
  } else {
    typedef typename Lanes<W / 2>::type half;
    half lo, hi;
    std::memcpy(&lo, &x, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&x) + sizeof lo, sizeof hi);
    return hsum<W / 2>(lo + hi);
  }
}

// A head dim D as vectors: the widest of 16, 8, 4 lanes that divides D and fits a register.
template <int D>
constexpr int kDimLanes =
    (D % 16 == 0 && kRegisterLanes >= 16) ? 16 : (D % 8 == 0 && kRegisterLanes >= 8 ? 8 : 4);
template <int D>
using dvec = typename Lanes<kDimLanes<D>>::type;
template <int D>
constexpr int kDimVectors = D / kDimLanes<D>;
template <int D>  // registers one dvec<D> takes
constexpr int kDimRegisters = std::max(1, kDimLanes<D> / kRegisterLanes);

// Keys to a block (key loops run over whole blocks): 16 where registers hold 16 floats and
// the dims loops are long, else 8. Zen 4 runs 512-bit operations as two 256-bit halves;
// there 16-key blocks were 1.3x faster at D = 64 and up to 1.2x slower at D <= 16.
template <int D>
constexpr int kKeyLanes = (kRegisterLanes >= 16 && D >= 32) ? 16 : 8;
static_assert(kMaxKeyBlock % 16 == 0, "scratch tiles must hold whole blocks of 16 keys");

// exp(x) for x <= 0 (scores minus their row maximum or log-sum-exp): Cephes' expf range
// reduction and polynomial (relative error ~2e-7), 2^n from the exponent bits;
// x < -87 gives exactly 0.
template <int KL, class V = typename Lanes<KL>::type, class I = typename IntLanes<KL>::type>
inline V exp_nonpositive(V x) {
  const V xc = x < -87.0f ? V{} - 87.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: (t + magic) - magic rounds t to nearest
  const V n = (xc * 1.44269504088896341f + magic) - magic;
  V r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  I bits = (__builtin_convertvector(n, I) + 127) << 23;
  bits = x < -87.0f ? I{} : bits;
  return p * (V)bits;  // a vector cast keeps the bits
}

// Padding keys past the nkt real ones get this score: exp maps it to exactly 0.
constexpr float kNoKey = -1e30f;

// s[j] = exp(s[j] - shift) for the nkt real keys, 0 for the padding keys up to nkp.
template <int KL>
inline void exp_shifted(float* __restrict s, int64_t nkt, int64_t nkp, float shift) {
  for (int64_t j = nkt; j < nkp; ++j) s[j] = kNoKey;
  typedef typename Lanes<KL>::type V;
  for (int64_t j = 0; j < nkp; j += KL) store(s + j, exp_nonpositive<KL>(load<V>(s + j) - shift));
}


template <int KL>
inline int64_t round_up(int64_t n) { return (n + KL - 1) / KL * KL; }

template <class T>
inline void fill_zero(T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = T{};  // bf16{}: +0
}

// Head h's keys of one set, the bias slot as key nk, zeros up to nkp keys: transposed
// [D][nkp] into t (if given) and as rows [nkp][D] into r (if given).
template <int D, class T>
void load_keys(const T* src, int64_t stride, const float* bias, int64_t nk, int64_t nkp,
               float* __restrict t, float* __restrict r) {
  const int64_t nkt = nk + (bias ? 1 : 0);
  const auto put = [&](int64_t j, int c, float value) {
    if (t) t[c * nkp + j] = value;
    if (r) r[j * D + c] = value;
  };
  for (int64_t j = 0; j < nk; ++j)
    for (int c = 0; c < D; ++c) put(j, c, to_float(src[j * stride + c]));
  for (int64_t j = nk; j < nkp; ++j)
    for (int c = 0; c < D; ++c) put(j, c, j < nkt ? bias[c] : 0.0f);
}

// s[j] = scale * (x . key_j) for all nkp keys, from transposed keys kt [D][nkp].
template <int D, class T>
inline void dot_keys(const T* __restrict x, const float* __restrict kt, int64_t nkp,
                     float scale, float* __restrict s) {
  float xs[D];
  for (int c = 0; c < D; ++c) xs[c] = to_float(x[c]) * scale;
  constexpr int KL = kKeyLanes<D>;
  typedef typename Lanes<KL>::type V;
  for (int64_t j = 0; j < nkp; j += KL) {
    V acc = xs[0] * load<V>(kt + j);
    for (int c = 1; c < D; ++c) acc += xs[c] * load<V>(kt + c * nkp + j);
    store(s + j, acc);
  }
}

// Queries handled together: their accumulators are independent FMA chains, which hides
// the FMA latency that one query's chain of keys would expose; bounded so that the
// accumulators take at most half the vector registers (the backward's, with three rows
// more per key, a quarter).
template <int D>
constexpr int kQueryBlock =
    std::max(1, std::min(kMaxQueryBlock, kRegisters / 2 / (kDimVectors<D> * kDimRegisters<D>)));
template <int D>
constexpr int kBackwardQueryBlock = std::max(1, kQueryBlock<D> / 2);

template <int KL>
inline float row_max(const float* __restrict s, int64_t nkp) {
  typedef typename Lanes<KL>::type V;
  V m = load<V>(s);
  for (int64_t j = KL; j < nkp; j += KL) {
    const V x = load<V>(s + j);
    m = x > m ? x : m;
  }
  return hmax<KL>(m);
}

template <int KL>
inline float row_sum(const float* __restrict s, int64_t nkp) {
  typedef typename Lanes<KL>::type V;
  V a = load<V>(s);
  for (int64_t j = KL; j < nkp; j += KL) a += load<V>(s + j);
  return hsum<KL>(a);
}

// NQ queries (rows i0.. of the set) of head h against keys kt [D][nkp] / vr [nkp][D].
template <int D, int NQ, class T>
void forward_queries(const T* q, int64_t q_stride, T* out, float* lse, int64_t heads,
                     const float* __restrict kt, const float* __restrict vr, int64_t nkt,
                     int64_t nkp, float scale, float* __restrict s) {
  constexpr int KL = kKeyLanes<D>;
  float m[NQ], inv[NQ];
  for (int i = 0; i < NQ; ++i) {
    float* si = s + i * nkp;
    dot_keys<D>(q + i * q_stride, kt, nkp, scale, si);
    for (int64_t j = nkt; j < nkp; ++j) si[j] = kNoKey;
    m[i] = row_max<KL>(si, nkp);
    for (int64_t j = 0; j < nkp; j += KL)
      store(si + j, exp_nonpositive<KL>(load<typename Lanes<KL>::type>(si + j) - m[i]));
    const float sum = row_sum<KL>(si, nkp);
    inv[i] = 1.0f / sum;
    lse[i * heads] = m[i] + std::log(sum);
  }
  constexpr int W = kDimLanes<D>, NV = kDimVectors<D>;
  dvec<D> o[NQ][NV] = {};
  for (int64_t j = 0; j < nkt; ++j) {
    dvec<D> vj[NV];
    for (int c = 0; c < NV; ++c) vj[c] = load<dvec<D>>(vr + j * D + c * W);
    for (int i = 0; i < NQ; ++i) {
      const float p = s[i * nkp + j];
      for (int c = 0; c < NV; ++c) o[i][c] += p * vj[c];
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < NV; ++c) store_as<W>(out + i * heads * D + c * W, o[i][c] * inv[i]);
}

// body(block, i) for the queries i.. of a set in blocks of NQ, then the rest in blocks of
// NQ / 2, NQ / 4, .. 1 (block: std::integral_constant<int, size>).
template <int NQ, class Body>
inline void in_blocks(int64_t nq, Body&& body, int64_t i = 0) {
  for (; i + NQ <= nq; i += NQ) body(std::integral_constant<int, NQ>{}, i);
  if constexpr (NQ > 1) in_blocks<NQ / 2>(nq, body, i);
}

template <int D, class T>
void forward_set(const VarlenSets& sets, const Strides& st, int64_t b, const T* q, const T* k,
                 const T* v, const float* bias_k, const float* bias_v, float scale, T* out,
                 float* lse, const Workspace& w) {
  constexpr int NQ = kQueryBlock<D>;
  const int64_t heads = sets.heads;
  const int64_t q0 = sets.cu_q[b], nq = sets.cu_q[b + 1] - q0;
  const int64_t k0 = sets.cu_k[b], nk = sets.cu_k[b + 1] - k0;
  const int64_t nkt = nk + (bias_k ? 1 : 0), nkp = round_up<kKeyLanes<D>>(nkt);
  if (nq == 0) return;
  if (nkt == 0) {  // nothing to attend to: zeros
    for (int64_t i = 0; i < nq; ++i) {
      fill_zero(out + (q0 + i) * heads * D, heads * D);
      fill_zero(lse + (q0 + i) * heads, heads);
    }
    return;
  }
  float* __restrict kt = w.kt;
  float* __restrict vr = w.vr;
  for (int64_t h = 0; h < heads; ++h) {
    load_keys<D>(k + k0 * st.k + h * D, st.k, bias_k ? bias_k + h * D : nullptr, nk, nkp, kt,
                 nullptr);
    load_keys<D>(v + k0 * st.v + h * D, st.v, bias_v ? bias_v + h * D : nullptr, nk, nkp,
                 nullptr, vr);
    in_blocks<NQ>(nq, [&](auto block, int64_t i) {
      forward_queries<D, decltype(block)::value>(
          q + (q0 + i) * st.q + h * D, st.q, out + ((q0 + i) * heads + h) * D,
          lse + (q0 + i) * heads + h, heads, kt, vr, nkt, nkp, scale, w.s);
    });
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
    exp_shifted<kKeyLanes<D>>(pi, nkt, nkp, lse[i * heads]);
    dot_keys<D>(gi, vt, nkp, 1.0f, si);  // s_j = dP_j = dO . v_j
    float delta = 0.0f;
    for (int c = 0; c < D; ++c) delta += gi[c] * oi[c];
    for (int64_t j = 0; j < nkp; ++j) si[j] = pi[j] * (si[j] - delta) * scale;  // dS * scale
  }
  constexpr int W = kDimLanes<D>, NV = kDimVectors<D>;
  typedef dvec<D> dv;
  dv gq[NQ][NV] = {};
  for (int64_t j = 0; j < nkt; ++j) {
    dv kj[NV], gkj[NV], gvj[NV];
    for (int c = 0; c < NV; ++c) {
      kj[c] = load<dv>(kr + j * D + c * W);
      gkj[c] = load<dv>(gk + j * D + c * W);
      gvj[c] = load<dv>(gv + j * D + c * W);
    }
    for (int i = 0; i < NQ; ++i) {
      const float dsj = s[i * nkp + j], pj = p[i * nkp + j];
      const float* __restrict qi = q + i * q_stride;
      const float* __restrict gi = dout + i * row;
      for (int c = 0; c < NV; ++c) {
        gq[i][c] += dsj * kj[c];
        gkj[c] += dsj * load<dv>(qi + c * W);
        gvj[c] += pj * load<dv>(gi + c * W);
      }
    }
    for (int c = 0; c < NV; ++c) {
      store(gk + j * D + c * W, gkj[c]);
      store(gv + j * D + c * W, gvj[c]);
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < NV; ++c) store(dq + i * row + c * W, gq[i][c]);
}

template <int D>
void backward_set(const VarlenSets& sets, const Strides& st, int64_t b, const float* dout,
                  const float* q, const float* k, const float* v, const float* out,
                  const float* lse, const float* bias_k, const float* bias_v, float scale,
                  float* dq, float* dk, float* dv, float* dbias_k, float* dbias_v,
                  const Workspace& w) {
  constexpr int NQ = kBackwardQueryBlock<D>;
  const int64_t heads = sets.heads, row = heads * D;
  const int64_t q0 = sets.cu_q[b], nq = sets.cu_q[b + 1] - q0;
  const int64_t k0 = sets.cu_k[b], nk = sets.cu_k[b + 1] - k0;
  const int64_t nkt = nk + (bias_k ? 1 : 0), nkp = round_up<kKeyLanes<D>>(nkt);
  if (nq == 0 || nkt == 0) {  // nothing attends, or nothing to attend to: zero gradients
    fill_zero(dq + q0 * row, nq * row);
    fill_zero(dk + k0 * row, nk * row);
    fill_zero(dv + k0 * row, nk * row);
    return;
  }
  float* __restrict kt = w.kt;
  float* __restrict kr = w.kr;
  float* __restrict vt = w.vt;
  float* __restrict gk = w.gk;
  float* __restrict gv = w.gv;
  for (int64_t h = 0; h < heads; ++h) {
    load_keys<D>(k + k0 * st.k + h * D, st.k, bias_k ? bias_k + h * D : nullptr, nk, nkp, kt,
                 kr);
    load_keys<D>(v + k0 * st.v + h * D, st.v, bias_v ? bias_v + h * D : nullptr, nk, nkp, vt,
                 nullptr);
    fill_zero(gk, nkt * D);
    fill_zero(gv, nkt * D);
    const auto at = [&](int64_t i) { return (q0 + i) * row + h * D; };  // [Tq, H, D] offset
    in_blocks<NQ>(nq, [&](auto block, int64_t i) {
      backward_queries<D, decltype(block)::value>(
          q + (q0 + i) * st.q + h * D, st.q, dout + at(i), out + at(i), lse + (q0 + i) * heads + h,
          heads, dq + at(i), kt, kr, vt, nkt, nkp, scale, w.p, w.s, gk, gv);
    });
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


// Entry points of this instruction set: dispatch on the head dim (4..64 specialised).
template <class T>
bool forward_any(const VarlenSets& sets, const Strides& st, int64_t begin, int64_t end,
                 const T* q, const T* k, const T* v, const float* bias_k, const float* bias_v,
                 float scale, T* out, float* lse, const Workspace& w) {
  switch (sets.head_dim) {
#define LAMFAST_CASE(D)                                                             \
  case D:                                                                           \
    for (int64_t b = begin; b < end; ++b)                                           \
      forward_set<D>(sets, st, b, q, k, v, bias_k, bias_v, scale, out, lse, w);     \
    return true;
    LAMFAST_CASE(4) LAMFAST_CASE(8) LAMFAST_CASE(12) LAMFAST_CASE(16)
    LAMFAST_CASE(24) LAMFAST_CASE(32) LAMFAST_CASE(48) LAMFAST_CASE(64)
#undef LAMFAST_CASE
    default: return false;
  }
}

}  // namespace

bool forward(const VarlenSets& sets, const Strides& st, int64_t begin, int64_t end,
             const float* q, const float* k, const float* v, const float* bias_k,
             const float* bias_v, float scale, float* out, float* lse, const Workspace& w) {
  return forward_any(sets, st, begin, end, q, k, v, bias_k, bias_v, scale, out, lse, w);
}

bool forward_bf16(const VarlenSets& sets, const Strides& st, int64_t begin, int64_t end,
                  const bf16* q, const bf16* k, const bf16* v, const float* bias_k,
                  const float* bias_v, float scale, bf16* out, float* lse, const Workspace& w) {
  return forward_any(sets, st, begin, end, q, k, v, bias_k, bias_v, scale, out, lse, w);
}

bool backward(const VarlenSets& sets, const Strides& st, int64_t begin, int64_t end,
              const float* dout, const float* q, const float* k, const float* v,
              const float* out, const float* lse, const float* bias_k, const float* bias_v,
              float scale, float* dq, float* dk, float* dv, float* dbias_k, float* dbias_v,
              const Workspace& w) {
  switch (sets.head_dim) {
#define LAMFAST_CASE(D)                                                                   \
  case D:                                                                                 \
    for (int64_t b = begin; b < end; ++b)                                                 \
      backward_set<D>(sets, st, b, dout, q, k, v, out, lse, bias_k, bias_v, scale, dq,    \
                      dk, dv, dbias_k, dbias_v, w);                                       \
    return true;
    LAMFAST_CASE(4) LAMFAST_CASE(8) LAMFAST_CASE(12) LAMFAST_CASE(16)
    LAMFAST_CASE(24) LAMFAST_CASE(32) LAMFAST_CASE(48) LAMFAST_CASE(64)
#undef LAMFAST_CASE
    default: return false;
  }
}

}  // namespace LAMFAST_ATTENTION_ISA
}  // namespace lamfast
