// The attention kernels built for AVX-512 (F, VL, BW, DQ; this file alone gets the
// flags): 32 registers of 16 floats. Chosen at run time by attention.cpp on CPUs that
// have them.
#define LAMFAST_ATTENTION_ISA avx512
#define LAMFAST_ATTENTION_REGISTER_LANES 16
#include "attention_impl.hpp"
