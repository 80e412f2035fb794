// exp() over the SIMD vectors of simd.h, for kernels that compute decays on the fly.
//
// The kernels are compiled for plain x86-64 (SSE2), which has no vector exp, and a
// scalar libm call per element would cost more than the rest of such a kernel. So:
// x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 split in two parts
// so that n * ln2_hi is exact), e^r by its Taylor polynomial of degree 7, whose
// truncation error (< 6e-9 relative) is below float32's rounding (6e-8), and 2^n
// built in the exponent bits. 2^n is applied as two factors 2^(n/2), 2^(n - n/2):
// each stays a normal float, so results that underflow to denormals are rounded
// once, as libm rounds them. Measured against float64 exp on 2 million points of
// [-110, 90]: relative error below 0.85 * 2^-23 where the result is a normal float,
// below the smallest denormal where it is not. NaN gives NaN, exp(-inf) = 0,
// exp(+inf) = inf.
//
// double vectors (used by the float64 path, i.e. tests) call std::exp lane by lane.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace tree_scan {

template <typename acc_t>
struct SimdExp {
  using vec = typename Simd<acc_t>::vec;
  static vec exp(vec x) {
    for (int64_t i = 0; i < Simd<acc_t>::kLanes; ++i) x[i] = std::exp(x[i]);
    return x;
  }
};

template <>
struct SimdExp<float> {
  using vec = Simd<float>::vec;
  typedef int32_t ivec __attribute__((vector_size(16)));

  static vec exp(vec x) {
    // Below -104, e^x is under half the smallest denormal (0 after rounding); above 89
    // it is over the largest float. Clamped there, the arithmetic below gives 0 and inf.
    // The comparisons are false for NaN, which the clamp turns into a number (so that
    // the integer conversion stays defined) and the last line restores.
    vec clamped = x >= -104.0f ? x : vec{} - 104.0f;
    clamped = clamped <= 89.0f ? clamped : vec{} + 89.0f;
    // Round to nearest: adding 1.5 * 2^23 pushes the fraction bits out.
    const vec n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    vec r = clamped - n * 0.693359375f;  // ln2_hi: 9 significant bits, so n * ln2_hi is exact
    r = r - n * -2.12194440e-4f;         // ln2 - ln2_hi
    vec p = r * (1.0f / 5040.0f) + 1.0f / 720.0f;  // Horner, highest power first
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const ivec power = __builtin_convertvector(n, ivec);
    const ivec half = power >> 1;
    const vec result = p * pow2(half) * pow2(power - half);
    return x == x ? result : x;
  }

 private:
  // 2^k for integer k in [-126, 127]: the biased exponent, shifted into place.
  static vec pow2(ivec k) {
    const ivec bits = (k + 127) << 23;
    vec v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
};

}  // namespace tree_scan
