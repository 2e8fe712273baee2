// Run-time choice between the AVX-512 (attention_avx512.cpp), AVX2+FMA
// (attention_avx2.cpp) and baseline (here) builds of the kernels, then the shared
// bias-gradient reduction.
#define LAMFAST_ATTENTION_ISA baseline
#define LAMFAST_ATTENTION_REGISTER_LANES 4
#include "attention_impl.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.hpp"

namespace lamfast {
namespace {

enum class Isa { baseline, avx2, avx512 };

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

bool cpu_has(Isa isa) {
#if defined(LAMFAST_HAVE_X86_ISAS)
  switch (isa) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return true;
  }
#else
  return isa == Isa::baseline;
#endif
}

// The best build this CPU runs, or the one LAMFAST_CPU_ISA names (read once, at the
// first call); naming one the CPU lacks is an error, never a silent fallback.
Isa chosen_isa() {
  static const Isa isa = [] {
    const char* forced = std::getenv("LAMFAST_CPU_ISA");
    if (forced && *forced) {
      for (Isa i : {Isa::avx512, Isa::avx2, Isa::baseline})
        if (std::strcmp(forced, isa_name(i)) == 0) {
          if (!cpu_has(i))
            throw std::runtime_error(std::string("LAMFAST_CPU_ISA=") + forced +
                                     ": this CPU (or build) has no " + forced + " kernels");
          return i;
        }
      throw std::runtime_error(std::string("LAMFAST_CPU_ISA=") + forced +
                               ": unknown; use avx512, avx2 or baseline");
    }
    for (Isa i : {Isa::avx512, Isa::avx2})
      if (cpu_has(i)) return i;
    return Isa::baseline;
  }();
  return isa;
}

bool isa_forced() {
  static const bool forced = [] {
    const char* name = std::getenv("LAMFAST_CPU_ISA");
    return name && *name;
  }();
  return forced;
}

// The build that runs head dim D: the chosen one, except that below D = 16 an AVX-512 CPU
// runs the AVX2 build unless LAMFAST_CPU_ISA forces avx512. There the AVX-512 build gains
// nothing: 0.84-0.87x the AVX2 build's speed at D = 8 on Zen 4 (which splits 512-bit
// operations in two), 1.0-1.1x at D = 16, 1.25-1.5x at D = 32
// (benchmarks/bench_attention_isa.py).
Isa kernel_isa(int64_t head_dim) {
  const Isa isa = chosen_isa();
  return isa == Isa::avx512 && head_dim < 16 && !isa_forced() ? Isa::avx2 : isa;
}

}  // namespace

const char* attention_isa() { return isa_name(chosen_isa()); }

bool attention_isa_runs(const char* isa) {
  for (Isa i : {Isa::avx512, Isa::avx2, Isa::baseline})
    if (std::strcmp(isa, isa_name(i)) == 0) return cpu_has(i);
  return false;
}

bool attention_supports(int64_t head_dim) {
  switch (head_dim) {
    case 4: case 8: case 12: case 16: case 24: case 32: case 48: case 64: return true;
    default: return false;
  }
}

namespace {

// Sets per thread below which one thread does all (thread start-up costs ~20 us).
constexpr int64_t kMinSetsPerThread = 16;

// Keys of the longest set + the bias slot, rounded up to whole key blocks: what every
// thread's Scratch is sized for (counted once per call, not per thread).
int64_t padded_keys(const VarlenSets& sets) {
  int64_t keys = 1;
  for (int64_t b = 0; b < sets.n_sets; ++b)
    keys = std::max<int64_t>(keys, sets.cu_k[b + 1] - sets.cu_k[b] + 1);
  return (keys + kMaxKeyBlock - 1) / kMaxKeyBlock * kMaxKeyBlock;
}

// One thread's Workspace for sets of at most `keys` padded keys and head dim `head_dim`.
class Scratch {
 public:
  Scratch(int64_t keys, int64_t head_dim) {
    const int64_t tile = keys * head_dim, rows = keys * kMaxQueryBlock;
    memory_.assign(static_cast<size_t>(6 * tile + 2 * rows), 0.0f);
    float* m = memory_.data();
    workspace_ = {m, m + tile, m + 2 * tile, m + 3 * tile, m + 4 * tile, m + 5 * tile,
                  m + 6 * tile, m + 6 * tile + rows};
  }
  const Workspace& workspace() const { return workspace_; }

 private:
  std::vector<float> memory_;
  Workspace workspace_;
};

void check_head_dim(const VarlenSets& sets) {
  if (!attention_supports(sets.head_dim))
    throw std::invalid_argument("attention: no CPU kernel for this head_dim");
}

// The entry point of the build kernel_isa() picks for this head dim, from the three builds'
// entries of one name (off x86-64 only the baseline build exists: all three are it).
#if defined(LAMFAST_HAVE_X86_ISAS)
#define LAMFAST_BUILDS(entry) baseline::entry, avx2::entry, avx512::entry
#else
#define LAMFAST_BUILDS(entry) baseline::entry, baseline::entry, baseline::entry
#endif
template <class Kernel>
Kernel pick(int64_t head_dim, Kernel baseline_kernel, Kernel avx2_kernel, Kernel avx512_kernel) {
  switch (kernel_isa(head_dim)) {
#if defined(LAMFAST_HAVE_X86_ISAS)
    case Isa::avx512: return avx512_kernel;
    case Isa::avx2: return avx2_kernel;
#endif
    default:
      (void)avx2_kernel;
      (void)avx512_kernel;
      return baseline_kernel;
  }
}

}  // namespace

void attention_forward(const VarlenSets& sets, const Strides& strides, const float* q,
                       const float* k, const float* v, const float* bias_k,
                       const float* bias_v, float scale, float* out, float* lse, int threads) {
  check_head_dim(sets);
  const auto forward = pick(sets.head_dim, LAMFAST_BUILDS(forward));
  const int64_t keys = padded_keys(sets);
  parallel_for(sets.n_sets, threads, kMinSetsPerThread, [&](int64_t begin, int64_t end, int) {
    const Scratch scratch(keys, sets.head_dim);
    forward(sets, strides, begin, end, q, k, v, bias_k, bias_v, scale, out, lse,
            scratch.workspace());
  });
}

void attention_forward_bf16(const VarlenSets& sets, const Strides& strides, const uint16_t* q,
                            const uint16_t* k, const uint16_t* v, const float* bias_k,
                            const float* bias_v, float scale, uint16_t* out, float* lse,
                            int threads) {
  static_assert(sizeof(bf16) == sizeof(uint16_t), "bf16 is 16 bits");
  check_head_dim(sets);
  const auto forward = pick(sets.head_dim, LAMFAST_BUILDS(forward_bf16));
  const int64_t keys = padded_keys(sets);
  const auto as_bf16 = [](const uint16_t* x) { return reinterpret_cast<const bf16*>(x); };
  parallel_for(sets.n_sets, threads, kMinSetsPerThread, [&](int64_t begin, int64_t end, int) {
    const Scratch scratch(keys, sets.head_dim);
    forward(sets, strides, begin, end, as_bf16(q), as_bf16(k), as_bf16(v), bias_k, bias_v,
            scale, reinterpret_cast<bf16*>(out), lse, scratch.workspace());
  });
}

void attention_backward(const VarlenSets& sets, const Strides& strides, const float* dout,
                        const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* bias_k, const float* bias_v,
                        float scale, float* dq, float* dk, float* dv, float* dbias_k,
                        float* dbias_v, int threads) {
  check_head_dim(sets);
  const int64_t hd = sets.heads * sets.head_dim;
  const int t = std::max(1, threads);
  // One partial bias gradient per thread, summed in thread order: deterministic.
  std::vector<float> partial(bias_k ? static_cast<size_t>(2 * t * hd) : 0, 0.0f);
  const auto backward = pick(sets.head_dim, LAMFAST_BUILDS(backward));
  const int64_t keys = padded_keys(sets);
  parallel_for(sets.n_sets, t, kMinSetsPerThread, [&](int64_t begin, int64_t end, int i) {
    const Scratch scratch(keys, sets.head_dim);
    float* pk = bias_k ? partial.data() + 2 * i * hd : nullptr;
    backward(sets, strides, begin, end, dout, q, k, v, out, lse, bias_k, bias_v, scale, dq, dk,
             dv, pk, pk ? pk + hd : nullptr, scratch.workspace());
  });
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
