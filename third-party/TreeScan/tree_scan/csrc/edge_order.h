// The total order on candidate edges that makes a minimum spanning tree unique.
//
// Edges compare by weight, then by their index in the candidate list (lower
// index first). Shared by the CPU and CUDA kernels so that both build the same
// tree from the same inputs.
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace tree_scan {

// An unsigned integer that sorts like the weight. Every float type converts to
// double exactly, so one key type serves them all. -0.0 and +0.0 get the same
// key (they compare equal as numbers); NaN gets the largest key, so edges of
// NaN weight are used last, after +inf.
TREE_SCAN_HOST_DEVICE inline uint64_t weight_order_key(double weight) {
  if (weight != weight) {
    return ~static_cast<uint64_t>(0);
  }
  if (weight == 0.0) {
    weight = 0.0;
  }
#if defined(__CUDA_ARCH__)
  const uint64_t bits = static_cast<uint64_t>(__double_as_longlong(weight));
#else
  uint64_t bits;
  std::memcpy(&bits, &weight, sizeof(bits));
#endif
  const uint64_t sign = static_cast<uint64_t>(1) << 63;
  // Negative numbers: flipping all bits reverses their order and puts them
  // below the positives; positive numbers: setting the sign bit lifts them.
  return (bits & sign) ? ~bits : (bits | sign);
}

}  // namespace tree_scan
