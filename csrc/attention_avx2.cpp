// The attention kernels built for AVX2+FMA (this file alone gets -mavx2 -mfma); chosen at
// run time by attention.cpp on CPUs that have them.
#define LAMFAST_ATTENTION_ISA avx2
#include "attention_impl.hpp"
