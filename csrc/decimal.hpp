// Decimal text -> double, bit for bit as std::from_chars(chars_format::general), but
// faster on the numbers the Gaia archive writes ("-597.9534820341436", "55.676746",
// "1.2e-05"). Pure C++17, header only.
//
// Fast path: "[-]d+[.d+][(e|E)[+-]d+]" with at most 19 digits m (read 8 at a time) and a
// decimal exponent q with |q| <= 27. Then m < 10^19 and 10^|q| are exact, and one IEEE
// operation m * 10^q or m / 10^q gives the correctly rounded result:
//   - m <= 2^53 and |q| <= 22: both exact doubles (Clinger's fast path), one double op;
//   - else, where long double is x87 extended (64-bit significand, 5^27 < 2^64): one
//     extended op rounds the exact value to 64 bits; rounding that to double is correct
//     unless it lies exactly halfway between two doubles (its 11 extra bits 0x400), which
//     is left to std::from_chars, as is every other form (more digits, inf, nan, ...).
#pragma once
#include <charconv>
#include <cstdint>
#include <cstring>
#include <limits>
#include <system_error>

namespace lamfast {
namespace decimal_detail {

constexpr int kMaxExactDouble = 22;    // 10^22 is the largest power of ten that is a double
constexpr int kMaxExactExtended = 27;  // 10^27 is the largest one in x87 extended
constexpr uint64_t kTwoTo53 = uint64_t{1} << 53;
constexpr bool kHaveExtended = std::numeric_limits<long double>::digits == 64 &&
                               std::numeric_limits<long double>::radix == 2;

constexpr double kPow10[kMaxExactDouble + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
constexpr long double kPow10Extended[kMaxExactExtended + 1] = {
    1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
    1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
    1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};

inline bool digit(const char* p, const char* e) {
  return p < e && static_cast<unsigned char>(*p - '0') < 10;
}

// The value of the n <= 8 leading digits of the 8 bytes in `x` (each byte XOR '0', so
// a digit byte holds its value; byte 0 is the first character: little-endian).
inline uint64_t leading_digits_value(uint64_t x, int n) {
  x <<= 8 * (8 - n);                       // drop the bytes after the digits; zeros lead
  x = x * 10 + (x >> 8);                   // even bytes: the pairs d0d1, d2d3, d4d5, d6d7
  const uint64_t pairs = 0x000000FF000000FF;  // bytes 0 and 4 (2 and 6 after >> 16)
  // high 32 bits: d0d1 * 10^6 + d4d5 * 10^2 + d2d3 * 10^4 + d6d7
  return ((x & pairs) * (100 + (uint64_t{1000000} << 32)) +
          ((x >> 16) & pairs) * (1 + (uint64_t{10000} << 32))) >> 32;
}

// Appends the run of digits at p to m, 8 bytes at a time; `count` counts them. Stops
// early (returning nullptr) past 19 digits, where m would no longer fit.
inline const char* digits(const char* p, const char* e, uint64_t& m, int& count) {
  constexpr uint64_t kPow10Int[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                     100000000};
  while (e - p >= 8) {
    uint64_t x;
    std::memcpy(&x, p, sizeof x);
    x ^= 0x3030303030303030;  // digit bytes -> 0..9
    // high bit of each byte that is not 0..9 (no carries between bytes: 0x7F + 0x76 < 0x100)
    const uint64_t other = (((x & 0x7F7F7F7F7F7F7F7F) + 0x7676767676767676) | x) &
                           0x8080808080808080;
    const int n = other ? __builtin_ctzll(other) / 8 : 8;
    if (count + n > 19) return nullptr;
    if (n > 0) m = m * kPow10Int[n] + leading_digits_value(x, n);
    count += n, p += n;
    if (n < 8) return p;
  }
  for (; digit(p, e); ++p) {
    if (++count > 19) return nullptr;
    m = m * 10 + static_cast<uint64_t>(*p - '0');
  }
  return p;
}

// m * 10^q correctly rounded, or false where the fast path cannot tell.
inline bool scale(uint64_t m, int q, double& out) {
  if (m <= kTwoTo53 && q >= -kMaxExactDouble && q <= kMaxExactDouble) {
    const double v = static_cast<double>(m);
    out = q < 0 ? v / kPow10[-q] : v * kPow10[q];
    return true;
  }
  if constexpr (kHaveExtended) {
    if (q < -kMaxExactExtended || q > kMaxExactExtended) return false;
    const long double v = static_cast<long double>(m);
    const long double r = q < 0 ? v / kPow10Extended[-q] : v * kPow10Extended[q];
    uint64_t significand;  // the first 8 bytes of the x87 format: 64 bits, leading one explicit
    std::memcpy(&significand, &r, sizeof significand);
    if ((significand & 0x7FF) == 0x400) return false;  // halfway between two doubles
    out = static_cast<double>(r);
    return true;
  }
  return false;
}

}  // namespace decimal_detail

// Parses a number at [p, e) exactly as std::from_chars(p, e, out) does (same value, end
// and error code).
inline std::from_chars_result parse_decimal(const char* p, const char* e, double& out) {
  using namespace decimal_detail;
  const char* s = p;
  const bool negative = s < e && *s == '-';
  s += negative;
  uint64_t m = 0;
  int count = 0;
  s = digits(s, e, m, count);
  const int whole = count;
  if (s == nullptr || whole == 0) return std::from_chars(p, e, out);
  if (s < e && *s == '.') {
    s = digits(s + 1, e, m, count);
    // "1." and "1.e5" (rare) are left to std::from_chars, as are > 19 digits
    if (s == nullptr || count == whole) return std::from_chars(p, e, out);
  }
  int q = whole - count;
  if (s < e && (*s == 'e' || *s == 'E')) {
    const char* t = s + 1;
    const bool minus = t < e && *t == '-';
    t += minus || (t < e && *t == '+');
    int exponent = 0, n = 0;
    for (; digit(t, e) && n < 6; ++t, ++n) exponent = exponent * 10 + (*t - '0');
    if (n == 0 || n == 6) return std::from_chars(p, e, out);  // "1e" (ends before 'e'), huge
    q += minus ? -exponent : exponent;
    s = t;
  }
  double v;
  if (!scale(m, q, v)) return std::from_chars(p, e, out);
  out = negative ? -v : v;
  return {s, std::errc()};
}

}  // namespace lamfast
