// Counter-based randomness: every random number is a pure function of
// (seed, epoch, star, slot), so results never depend on threads or chunking.
// lamfast/sampler.py reproduces these exact bit operations in numpy.
#pragma once
#include <cstdint>

namespace lamfast {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64 finaliser (Steele, Lea & Flood 2014).
inline uint64_t mix64(uint64_t z) {
  z += kGolden;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Key of one star in one epoch.
inline uint64_t star_key(uint64_t seed, uint64_t epoch, uint64_t star) {
  return mix64(mix64(mix64(seed) ^ epoch) ^ star);
}

// The slot-th random 64-bit number of a star.
inline uint64_t slot_random(uint64_t star_key_value, uint64_t slot) {
  return mix64(star_key_value ^ (slot * 0xD1B54A32D192ED03ull));
}

}  // namespace lamfast
