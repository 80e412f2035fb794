// Marks helpers that both the CPU and the CUDA kernels call.
#pragma once

#if defined(__CUDACC__)
#define TREE_SCAN_HOST_DEVICE __host__ __device__
#else
#define TREE_SCAN_HOST_DEVICE
#endif
