// The interface between attention.cpp (instruction-set choice, threads, scratch memory)
// and the kernels that attention_impl.hpp builds once per instruction set.
//
// The per-instruction-set files hold the kernels only: every library template with an
// out-of-line copy (vectors, threads) stays in attention.cpp. A copy of, say,
// std::vector<float>::resize compiled with -mavx512f in attention_avx512.cpp would be a
// weak symbol that the linker may keep for every caller, baseline code included, and so
// crash CPUs without AVX-512; the build checks that those objects define no weak symbol
// (cmake/check_isa_objects.cmake).
#pragma once
#include <cstdint>

#include "attention.hpp"

namespace lamfast {

constexpr int64_t kMaxKeyBlock = 16;   // key tiles are padded to a multiple of this
constexpr int kMaxQueryBlock = 8;      // query rows handled together, at most

// A bfloat16 value: the top 16 bits of a float.
struct bf16 {
  uint16_t bits;
};

// Per-thread scratch for sets of at most `keys` keys (bias slot included, rounded up to
// kMaxKeyBlock) and head dim D.
struct Workspace {
  float *kt, *vt, *kr, *vr, *gk, *gv;  // [keys * D] key tiles
  float *s, *p;                        // [kMaxQueryBlock * keys] score rows
};

// Sets [begin, end) of one instruction set's build; false: no kernel for this head dim.
// forward_bf16: bf16 q, k, v and out (fp32 bias and lse), computed in fp32.
#define LAMFAST_ATTENTION_KERNELS(ISA)                                                      \
  namespace ISA {                                                                          \
  bool forward(const VarlenSets& sets, const Strides& st, int64_t begin, int64_t end,      \
               const float* q, const float* k, const float* v, const float* bias_k,        \
               const float* bias_v, float scale, float* out, float* lse,                   \
               const Workspace& w);                                                        \
  bool forward_bf16(const VarlenSets& sets, const Strides& st, int64_t begin, int64_t end, \
                    const bf16* q, const bf16* k, const bf16* v, const float* bias_k,      \
                    const float* bias_v, float scale, bf16* out, float* lse,               \
                    const Workspace& w);                                                   \
  bool backward(const VarlenSets& sets, const Strides& st, int64_t begin, int64_t end,     \
                const float* dout, const float* q, const float* k, const float* v,         \
                const float* out, const float* lse, const float* bias_k,                   \
                const float* bias_v, float scale, float* dq, float* dk, float* dv,         \
                float* dbias_k, float* dbias_v, const Workspace& w);                       \
  }

LAMFAST_ATTENTION_KERNELS(baseline)
LAMFAST_ATTENTION_KERNELS(avx2)
LAMFAST_ATTENTION_KERNELS(avx512)

}  // namespace lamfast
