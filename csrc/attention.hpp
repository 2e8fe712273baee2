// Varlen attention on packed ragged sets for CPUs, forward and backward, fp32.
//
// Layout (FlashAttention varlen): q [Tq, H, D], k and v [Tk, H, D]; set b's queries are
// rows cu_q[b]..cu_q[b+1] and its keys rows cu_k[b]..cu_k[b+1]. Within a row the H x D
// values are contiguous; rows of q, k, v may be further apart (a slice of a fused QKV
// projection). Optional learned bias key/value [H, D] appended to every set's keys, never
// masked (PyTorch add_bias_kv). Outputs and gradients are contiguous [T, H, D].
#pragma once
#include <cstdint>

namespace lamfast {

struct VarlenSets {
  const int32_t* cu_q;   // [n_sets + 1]
  const int32_t* cu_k;   // [n_sets + 1]
  int64_t n_sets;
  int64_t heads;
  int64_t head_dim;
};

struct Strides {  // elements between consecutive token rows of q, k, v
  int64_t q, k, v;
};

// Head dims with a compiled kernel; callers use another path for the rest.
bool attention_supports(int64_t head_dim);

// The instruction set the kernels run with: "avx512" where the CPU has AVX-512 F, VL, BW
// and DQ, else "avx2" where it has AVX2+FMA, else "baseline". The environment variable
// LAMFAST_CPU_ISA=avx512|avx2|baseline forces one (read once, at the first call); naming
// one the CPU lacks, or an unknown one, raises std::runtime_error. Unforced, head dims
// below 16 run the AVX2 build on AVX-512 CPUs (faster there; see attention.cpp).
const char* attention_isa();

// Whether this CPU (and build) runs the kernels of instruction set `isa` ("avx512",
// "avx2", "baseline"; false for any other name).
bool attention_isa_runs(const char* isa);

// out [Tq, H, D]; lse [Tq, H] = log-sum-exp of each query row's scaled scores (the
// backward recomputes probabilities from it). A set with no key and no bias gives
// out = 0, lse = 0. bias_k and bias_v are both null or both [H, D].
void attention_forward(const VarlenSets& sets, const Strides& strides, const float* q,
                       const float* k, const float* v, const float* bias_k,
                       const float* bias_v, float scale, float* out, float* lse, int threads);

// The same for bf16 q, k, v and out (uint16_t: the top 16 bits of a float; computed in
// fp32, out rounded to nearest even); bias_k/bias_v and lse stay fp32. Inference only: the
// backward takes fp32.
void attention_forward_bf16(const VarlenSets& sets, const Strides& strides, const uint16_t* q,
                            const uint16_t* k, const uint16_t* v, const float* bias_k,
                            const float* bias_v, float scale, uint16_t* out, float* lse,
                            int threads);

// Gradients of sum(dout * out); dout and out are contiguous [Tq, H, D]. dq, dk, dv are
// fully written (keys of sets without queries get 0). With a bias, dbias_k/dbias_v [H, D]
// are written: sums over sets added in a fixed order for a given thread count.
void attention_backward(const VarlenSets& sets, const Strides& strides, const float* dout,
                        const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* bias_k, const float* bias_v,
                        float scale, float* dq, float* dk, float* dv, float* dbias_k,
                        float* dbias_v, int threads);

}  // namespace lamfast
