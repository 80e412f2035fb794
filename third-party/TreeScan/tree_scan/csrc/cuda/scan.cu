// Tree scans on the GPU, forward and backward.
//
// One thread per (image, channel) walks the breadth-first order, the same
// sweeps as the CPU kernel (see cpu/scan.cpp for the formulas). There is no
// shared memory and no barrier: every thread owns its channel, so nothing
// diverges around a __syncthreads and nothing races. The sweeps keep their
// values in float32 (float64 for double) scratch laid out [image][BFS
// position][channel], so that the threads of a warp (neighbouring channels)
// touch neighbouring addresses.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "../kernel_checks.h"
#include "common.cuh"

namespace tree_scan {
namespace cuda {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  TORCH_CHECK_VALUE(blocks <= INT_MAX, "tree scan: input too large for one launch (", n, " threads)");
  return blocks;
}

// An order or parent that did not come from bfs() is reported by a device-side
// assertion (as torch's own index kernels do: the host cannot be told without a
// synchronisation); whatever happens, nothing is read or written out of bounds.
__global__ void position_of_kernel(const int64_t* order, int64_t batch, int64_t length, int32_t* position_of) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= batch * length) return;
  const int64_t b = i / length, v = order[i];
  CUDA_KERNEL_ASSERT(0 <= v && v < length && "tree scan: order is not a permutation (use tree_scan.bfs)");
  if (0 <= v && v < length) {
    const int32_t earlier = atomicExch(&position_of[b * length + v], static_cast<int32_t>(i % length));
    CUDA_KERNEL_ASSERT(earlier == -1 && "tree scan: order is not a permutation (use tree_scan.bfs)");
  }
}

__global__ void parent_position_kernel(const int64_t* order, const int64_t* parent, const int32_t* position_of,
                                       int64_t batch, int64_t length, int32_t* parent_pos) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= batch * length) return;
  const int64_t b = i / length, k = i % length, v = order[i];
  const int64_t p = (0 <= v && v < length) ? parent[b * length + v] : -1;
  const int32_t pk = (0 <= p && p < length) ? position_of[b * length + p] : -1;
  CUDA_KERNEL_ASSERT(-1 <= p && p < length && (p < 0 || (0 <= pk && pk < k)) &&
                     "tree scan: a parent does not come before its child (use tree_scan.bfs)");
  parent_pos[i] = (0 <= pk && pk < k) ? pk : -1;
}

// For every BFS position, the position of its vertex's parent (-1 at roots).
at::Tensor parent_positions(const at::Tensor& order, const at::Tensor& parent) {
  const int64_t batch = order.size(0), length = order.size(1);
  TORCH_CHECK_VALUE(length < INT_MAX, "tree scan: too many vertices (", length, ")");
  auto position_of = at::full({batch, length}, -1, order.options().dtype(at::kInt));
  auto parent_pos = at::empty({batch, length}, order.options().dtype(at::kInt));
  const int64_t n = batch * length;
  if (n == 0) return parent_pos;
  auto stream = c10::cuda::getCurrentCUDAStream();
  position_of_kernel<<<blocks_for(n), kThreads, 0, stream>>>(order.data_ptr<int64_t>(), batch, length,
                                                             position_of.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  parent_position_kernel<<<blocks_for(n), kThreads, 0, stream>>>(order.data_ptr<int64_t>(), parent.data_ptr<int64_t>(),
                                                                 position_of.data_ptr<int32_t>(), batch, length,
                                                                 parent_pos.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return parent_pos;
}

// The walk of one (image, channel): its BFS order, parent positions and scratch rows.
template <typename acc_t>
struct ChannelWalk {
  int64_t b, c, length, channels;
  const int64_t* order;
  const int32_t* parent_pos;
  __device__ ChannelWalk(int64_t index, int64_t channels_, int64_t length_, const int64_t* order_all,
                         const int32_t* parent_pos_all)
      : b(index / channels_), c(index % channels_), length(length_), channels(channels_),
        order(order_all + b * length_), parent_pos(parent_pos_all + b * length_) {}
  // Row k of a [image][position][channel] scratch buffer.
  __device__ acc_t& at(acc_t* buffer, int64_t k) const {
    return buffer[(b * length + k) * channels + c];
  }
  // An out-of-range order entry (asserted in position_of_kernel) reads 0 and writes nothing.
  template <typename scalar_t>
  __device__ acc_t load(const Strided3<const scalar_t>& t, int64_t k) const {
    const int64_t v = order[k];
    return (0 <= v && v < length) ? static_cast<acc_t>(t(b, c, v)) : acc_t(0);
  }
  template <typename scalar_t>
  __device__ void store(const Strided3<scalar_t>& t, int64_t k, acc_t value) const {
    const int64_t v = order[k];
    if (0 <= v && v < length) t(b, c, v) = static_cast<scalar_t>(value);
  }
  // Leaf -> root: a_p += w_k a_k (reverse BFS order finishes every subtree first).
  template <typename scalar_t>
  __device__ void sweep_up(acc_t* a, const Strided3<const scalar_t>& w) const {
    for (int64_t k = length - 1; k > 0; --k) {
      const int32_t p = parent_pos[k];
      if (p >= 0) at(a, p) += load(w, k) * at(a, k);
    }
  }
};

template <typename scalar_t, bool kAllRoots>
__global__ void __launch_bounds__(kThreads) scan_forward_kernel(Strided3<const scalar_t> x, Strided3<const scalar_t> w,
                                                                Strided3<scalar_t> out, const int64_t* order,
                                                                const int32_t* parent_pos, int64_t batch,
                                                                int64_t channels, int64_t length,
                                                                at::opmath_type<scalar_t>* a) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= batch * channels) return;
  const ChannelWalk<acc_t> walk(index, channels, length, order, parent_pos);
  for (int64_t k = 0; k < length; ++k) walk.at(a, k) = walk.load(x, k);
  walk.sweep_up(a, w);
  if (kAllRoots) {  // root -> leaf: out_k = (1 - w_k^2) a_k + w_k out_p
    for (int64_t k = 1; k < length; ++k) {
      const int32_t p = walk.parent_pos[k];
      if (p < 0) continue;
      const acc_t wk = walk.load(w, k);
      walk.at(a, k) = (1 - wk * wk) * walk.at(a, k) + wk * walk.at(a, p);
    }
  }
  for (int64_t k = 0; k < length; ++k) walk.store(out, k, walk.at(a, k));
}

// All-roots gradients (cpu/scan.cpp explains the formula): both sweeps over x
// and over grad_out; while walking down, row k still holds a_k and ag_k and the
// parent's row already holds out_p and og_p.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) scan_all_roots_backward_kernel(
    Strided3<const scalar_t> grad_out, Strided3<const scalar_t> x, Strided3<const scalar_t> w,
    Strided3<scalar_t> grad_x, Strided3<scalar_t> grad_w, const int64_t* order, const int32_t* parent_pos,
    int64_t batch, int64_t channels, int64_t length, at::opmath_type<scalar_t>* a, at::opmath_type<scalar_t>* ag) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= batch * channels) return;
  const ChannelWalk<acc_t> walk(index, channels, length, order, parent_pos);
  for (int64_t k = 0; k < length; ++k) {
    walk.at(a, k) = walk.load(x, k);
    walk.at(ag, k) = walk.load(grad_out, k);
  }
  walk.sweep_up(a, w);
  walk.sweep_up(ag, w);
  for (int64_t k = 0; k < length; ++k) {
    const int32_t p = walk.parent_pos[k];
    if (p < 0) {
      walk.store(grad_w, k, acc_t(0));
      continue;
    }
    const acc_t wk = walk.load(w, k);
    const acc_t ak = walk.at(a, k), agk = walk.at(ag, k), op = walk.at(a, p), ogp = walk.at(ag, p);
    walk.store(grad_w, k, agk * (op - wk * ak) + ak * (ogp - wk * agk));
    walk.at(a, k) = (1 - wk * wk) * ak + wk * op;
    walk.at(ag, k) = (1 - wk * wk) * agk + wk * ogp;
  }
  for (int64_t k = 0; k < length; ++k) walk.store(grad_x, k, walk.at(ag, k));
}

// Causal gradients: G_k = g_k + w_k G_p, grad_x = G, grad_w_k = G_p a_k.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) scan_causal_backward_kernel(
    Strided3<const scalar_t> grad_out, Strided3<const scalar_t> x, Strided3<const scalar_t> w,
    Strided3<scalar_t> grad_x, Strided3<scalar_t> grad_w, const int64_t* order, const int32_t* parent_pos,
    int64_t batch, int64_t channels, int64_t length, at::opmath_type<scalar_t>* a, at::opmath_type<scalar_t>* g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (index >= batch * channels) return;
  const ChannelWalk<acc_t> walk(index, channels, length, order, parent_pos);
  for (int64_t k = 0; k < length; ++k) walk.at(a, k) = walk.load(x, k);
  walk.sweep_up(a, w);
  for (int64_t k = 0; k < length; ++k) {
    const int32_t p = walk.parent_pos[k];
    acc_t gk = walk.load(grad_out, k);
    if (p < 0) {
      walk.store(grad_w, k, acc_t(0));
    } else {
      const acc_t gp = walk.at(g, p);
      walk.store(grad_w, k, gp * walk.at(a, k));
      gk += walk.load(w, k) * gp;
    }
    walk.at(g, k) = gk;
    walk.store(grad_x, k, gk);
  }
}

template <bool kAllRoots>
at::Tensor scan_cuda(const at::Tensor& x, const at::Tensor& edge_weight, const at::Tensor& order_in,
                     const at::Tensor& parent_in) {
  check_scan_inputs(kAllRoots ? "scan_all_roots" : "scan_causal", x, edge_weight, order_in, parent_in);
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const auto order = order_in.contiguous(), parent = parent_in.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), length = x.size(2);
  auto out = at::empty_like(x);
  if (out.numel() == 0) return out;
  const auto parent_pos = parent_positions(order, parent);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto a = at::empty({batch, length, channels}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    scan_forward_kernel<scalar_t, kAllRoots><<<blocks_for(batch * channels), kThreads, 0, stream>>>(
        Strided3<const scalar_t>(x), Strided3<const scalar_t>(edge_weight), Strided3<scalar_t>(out),
        order.data_ptr<int64_t>(), parent_pos.data_ptr<int32_t>(), batch, channels, length, a.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

template <bool kAllRoots>
std::tuple<at::Tensor, at::Tensor> scan_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                      const at::Tensor& edge_weight, const at::Tensor& order_in,
                                                      const at::Tensor& parent_in) {
  const char* op = kAllRoots ? "scan_all_roots_backward" : "scan_causal_backward";
  check_scan_backward_inputs(op, grad_out, x, edge_weight, order_in, parent_in);
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const auto order = order_in.contiguous(), parent = parent_in.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), length = x.size(2);
  auto grad_x = at::empty_like(x);
  auto grad_w = at::empty_like(edge_weight);
  if (x.numel() == 0) return {grad_x, grad_w};
  const auto parent_pos = parent_positions(order, parent);
  const auto grad = grad_out.to(x.scalar_type());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scan_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto scratch = at::empty({2, batch, length, channels}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    auto kernel = kAllRoots ? scan_all_roots_backward_kernel<scalar_t> : scan_causal_backward_kernel<scalar_t>;
    kernel<<<blocks_for(batch * channels), kThreads, 0, stream>>>(
        Strided3<const scalar_t>(grad), Strided3<const scalar_t>(x), Strided3<const scalar_t>(edge_weight),
        Strided3<scalar_t>(grad_x), Strided3<scalar_t>(grad_w), order.data_ptr<int64_t>(),
        parent_pos.data_ptr<int32_t>(), batch, channels, length, scratch[0].data_ptr<acc_t>(),
        scratch[1].data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_x, grad_w};
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(tree_scan, CUDA, m) {
  m.impl("scan_all_roots", &cuda::scan_cuda<true>);
  m.impl("scan_causal", &cuda::scan_cuda<false>);
  m.impl("scan_all_roots_backward", &cuda::scan_backward_cuda<true>);
  m.impl("scan_causal_backward", &cuda::scan_backward_cuda<false>);
}

}  // namespace tree_scan
