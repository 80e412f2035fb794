// A 3-d tensor read or written through its strides, so that kernels take
// non-contiguous inputs (channels-last views, expanded batches) without copies.
// Shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "host_device.h"

namespace tree_scan {

template <typename T>
struct Strided3 {
  T* data;
  int64_t s0, s1, s2;
  explicit Strided3(const at::Tensor& t)
      : data(static_cast<T*>(t.data_ptr())), s0(t.stride(0)), s1(t.stride(1)), s2(t.stride(2)) {}
  TREE_SCAN_HOST_DEVICE T& operator()(int64_t i, int64_t j, int64_t k) const {
    return data[i * s0 + j * s1 + k * s2];
  }
};

}  // namespace tree_scan
