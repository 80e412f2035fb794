// Pieces shared by the CUDA kernels.
#pragma once

#include <ATen/ATen.h>
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "../strided.h"

namespace tree_scan {
namespace cuda {

// Exclusive prefix sums over a sequence longer than the block, one block-wide
// scan per chunk of kThreads items. `item(i)` gives the count of item i;
// `emit(i, offset)` receives the running offset of item i (only for i < n).
// Every thread of the block must call it; returns start + the total on every
// thread.
template <int kThreads, typename Item, typename Emit>
__device__ int64_t block_exclusive_scan(int64_t n, int64_t start, const Item& item, const Emit& emit) {
  using BlockScan = cub::BlockScan<int64_t, kThreads>;
  __shared__ typename BlockScan::TempStorage storage;
  __shared__ int64_t running;
  if (threadIdx.x == 0) {
    running = start;
  }
  __syncthreads();
  for (int64_t base = 0; base < n; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    const int64_t count = i < n ? item(i) : 0;
    int64_t offset, total;
    BlockScan(storage).ExclusiveSum(count, offset, total);
    if (i < n) {
      emit(i, running + offset);
    }
    __syncthreads();  // everyone has read `running` and the scan storage
    if (threadIdx.x == 0) {
      running += total;
    }
    __syncthreads();
  }
  const int64_t end = running;
  __syncthreads();  // a following call may reset `running`
  return end;
}

}  // namespace cuda
}  // namespace tree_scan
