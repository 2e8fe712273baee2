// The attention kernels built for AVX2+FMA (this file alone gets -mavx2 -mfma): 16
// registers of 8 floats. Chosen at run time by attention.cpp on CPUs that have them.
#define LAMFAST_ATTENTION_ISA avx2
#define LAMFAST_ATTENTION_REGISTER_LANES 8
#include "attention_impl.hpp"
