// Short SIMD vectors for the CPU kernels: GCC/Clang vector extensions of 16
// bytes (SSE on any x86-64, NEON on Arm), read and written through memcpy so
// that the data they come from stays plain arrays.
#pragma once

#include <cstdint>
#include <cstring>

namespace tree_scan {

template <typename T>
struct SimdType;
template <>
struct SimdType<float> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct SimdType<double> {
  typedef double type __attribute__((vector_size(16)));
};

template <typename acc_t>
struct Simd {
  using vec = typename SimdType<acc_t>::type;
  static constexpr int64_t kLanes = sizeof(vec) / sizeof(acc_t);
  static vec load(const acc_t* p) {
    vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(acc_t* p, vec v) {
    std::memcpy(p, &v, sizeof v);
  }
  static acc_t sum(vec v) {
    acc_t total = 0;
    for (int64_t i = 0; i < kLanes; ++i) total += v[i];
    return total;
  }
};

}  // namespace tree_scan
