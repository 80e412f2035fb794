// GrootL's selective tree scan on the CPU, fused (torch.ops.tree_scan_lan, schemas in
// ../lan_ops.cpp), forward and backward.
//
// Per row, channel d and state n (SPEC §4), over the tokens t:
//   u_t = delta_t[d] B_t[n] x_t[d],   a_t = exp(delta_t[d] A[d, n])
//   chain:  h_t = a_t h_{t-1} + u_t                          (Mamba's recurrence)
//   tree:   s_v = u_v + sum over the children c of v of w_c s_c, on the tree of the
//           flipped sequence (vertex v = token L-1-v); the edge from c to its parent
//           carries w_c = a of the token after c's token (roll(flip(a), 1); the root,
//           vertex 0, would wrap around to token 0)
//   y_t[d] = sum_n C_t[n] (h_t + tree_scale s_{L-1-t}) + D[d] x_t[d]
//   final state (the generation cache): h_{L-1} + tree_scale s_0.
// Without a tree the second tree is the chain itself: h is scaled by 1 + tree_scale.
//
// Layout of the work. A task takes one row and a group of kGroupChannels channels,
// and walks them in blocks small enough that a block's scratch (decays and states,
// L x block x N each) stays in the core's L2 cache. The state dimension sits in SIMD
// lanes (simd.h), padded with zeros to whole vectors; rows of the scratch hold the
// block's channels of one token, so a tree edge updates one contiguous run. Nothing
// of size B x L x d x N is allocated: u and the decays are recomputed per block, in
// the backward as well, and every sum over the state (the C read-out, the gradients
// of x and delta) is taken inside the kernel. Arithmetic in at::opmath_type (float
// for half, bfloat16 and float; double for double).
//
// Gradients, with G the gradient of the loss for a state and gy that of y:
//   chain, last token first:   G_t = chain_scale gy_t C_t + a_{t+1} G_{t+1}
//   tree, parents first:       G_v = tree_scale gy_v C_v + w_v G_parent(v)
//   (the final state's gradient seeds the last token and the root). Each u receives
//   G; each decay receives G(next state) x (the state it multiplies), taken times the
//   decay as q = the gradient for delta A. Then
//     grad x = sum_n G delta B + gy D,   grad delta = sum_n (G B x + q A),
//     grad A = sum_t q delta,   grad B = sum_d G delta x,
//     grad C = sum_d gy (chain_scale h + tree_scale s),   grad D = sum_t gy x.
// grad B and grad C sum over channels, i.e. over tasks, and grad A and grad D over
// rows: tasks write partial sums (grad B, grad C: one B x L x N per channel group)
// that are added at the end in a fixed order, so no result depends on the number of
// threads.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../strided.h"
#include "simd.h"
#include "simd_exp.h"

namespace tree_scan {
namespace {

constexpr int64_t kGroupChannels = 64;
// Scratch of a channel block: three L x block x N buffers in the backward.
constexpr int64_t kBlockScratchBytes = int64_t(384) << 10;
constexpr int64_t kStaggerBytes = 320;  // between buffers: see scan.cpp (4 KiB aliasing)
constexpr size_t kKeptScratchBytes = size_t(64) << 20;

// ---------------------------------------------------------------------------
// Checks of direct torch.ops calls; tree_scan_lan.selective_tree_scan checks the
// same with messages for users.

void check_inputs(const char* op, const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A,
                  const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                  const std::optional<at::Tensor>& order, const std::optional<at::Tensor>& parent) {
  TORCH_CHECK_VALUE(x.dim() == 3, op, ": x must be (B, L, d), got ", x.sizes());
  TORCH_CHECK_VALUE(delta.sizes() == x.sizes(), op, ": delta must have the shape of x ", x.sizes(), ", got ",
                    delta.sizes());
  TORCH_CHECK_VALUE(A.dim() == 2 && A.size(0) == x.size(2), op, ": A must be (d, N) with d = ", x.size(2), ", got ",
                    A.sizes());
  const std::vector<int64_t> bc_shape{x.size(0), x.size(1), A.size(1)};
  TORCH_CHECK_VALUE(B.sizes() == bc_shape && C.sizes() == bc_shape, op, ": B and C must be (B, L, N) = ",
                    at::IntArrayRef(bc_shape), ", got ", B.sizes(), " and ", C.sizes());
  TORCH_CHECK_VALUE(D.dim() == 1 && D.size(0) == x.size(2), op, ": D must be (d,) with d = ", x.size(2), ", got ",
                    D.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), op, ": x must be floating point, got ", x.scalar_type());
  const auto acc = at::toOpMathType(x.scalar_type());
  TORCH_CHECK_TYPE(B.scalar_type() == x.scalar_type() && C.scalar_type() == x.scalar_type(), op,
                   ": B and C must have the dtype of x (", x.scalar_type(), "), got ", B.scalar_type(), " and ",
                   C.scalar_type());
  TORCH_CHECK_TYPE(delta.scalar_type() == x.scalar_type() || delta.scalar_type() == acc, op,
                   ": delta must have the dtype of x or ", acc, ", got ", delta.scalar_type());
  TORCH_CHECK_TYPE(A.scalar_type() == acc && D.scalar_type() == acc, op, ": A and D must be ", acc, ", got ",
                   A.scalar_type(), " and ", D.scalar_type());
  TORCH_CHECK_VALUE(order.has_value() == parent.has_value(), op,
                    ": tree_order and tree_parent must be given together (or both None for the chain)");
  std::vector<at::Tensor> on_device{delta, A, B, C, D};
  if (order.has_value()) {
    const std::vector<int64_t> tree_shape{x.size(0), x.size(1)};
    TORCH_CHECK_VALUE(order->sizes() == tree_shape && parent->sizes() == tree_shape, op,
                      ": tree_order and tree_parent must be (B, L) = ", at::IntArrayRef(tree_shape), ", got ",
                      order->sizes(), " and ", parent->sizes());
    TORCH_CHECK_TYPE(order->scalar_type() == at::kLong && parent->scalar_type() == at::kLong, op,
                     ": tree_order and tree_parent must be int64");
    on_device.push_back(*order);
    on_device.push_back(*parent);
  }
  for (const auto& t : on_device) {
    TORCH_CHECK_VALUE(t.device() == x.device(), op, ": every tensor must be on the device of x (", x.device(),
                      "), got one on ", t.device());
  }
}

// The kernels walk `order` backwards (children before parents) and forwards (parents
// first): `order` must be a permutation of the vertices with every parent before its
// children, as tree_scan_lan.bfs makes it.
void check_tree(const at::Tensor& order, const at::Tensor& parent) {
  const int64_t batch = order.size(0), length = order.size(1);
  const int64_t* order_in = order.data_ptr<int64_t>();
  const int64_t* parent_in = parent.data_ptr<int64_t>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> position(length);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t* row_order = order_in + b * length;
      const int64_t* row_parent = parent_in + b * length;
      std::fill(position.begin(), position.end(), -1);
      for (int64_t k = 0; k < length; ++k) {
        const int64_t v = row_order[k];
        TORCH_CHECK_VALUE(0 <= v && v < length && position[v] == -1, "selective_tree_scan: tree_order[", b,
                          "] is not a permutation of the ", length, " vertices (use tree_scan_lan.bfs to make it)");
        position[v] = k;
      }
      for (int64_t k = 0; k < length; ++k) {
        const int64_t p = row_parent[row_order[k]];
        TORCH_CHECK_VALUE(-1 <= p && p < length, "selective_tree_scan: tree_parent[", b, "] holds ", p,
                          ", outside [-1, ", length, ")");
        TORCH_CHECK_VALUE(p < 0 || position[p] < k, "selective_tree_scan: in tree_order[", b, "] vertex ",
                          row_order[k], " comes before its parent ", p, " (use tree_scan_lan.bfs to make the order)");
      }
    }
  });
}

// Columns [c0, c0 + count) of row b of a (B, L, K) tensor, as acc_t rows of `width`
// entries (t * width + j); columns count..width-1 are zeros. Walks memory in order
// whichever of L and K is the inner dimension.
template <typename src_t, typename acc_t>
void load_columns(const Strided3<const src_t>& src, int64_t b, int64_t c0, int64_t count, int64_t length,
                  int64_t width, acc_t* dst) {
  if (src.s1 < src.s2) {
    for (int64_t j = 0; j < count; ++j) {
      for (int64_t t = 0; t < length; ++t) dst[t * width + j] = static_cast<acc_t>(src(b, t, c0 + j));
    }
  } else {
    for (int64_t t = 0; t < length; ++t) {
      for (int64_t j = 0; j < count; ++j) dst[t * width + j] = static_cast<acc_t>(src(b, t, c0 + j));
    }
  }
  for (int64_t t = 0; t < length; ++t) std::fill(dst + t * width + count, dst + (t + 1) * width, acc_t(0));
}

// Hands out consecutive buffers of one scratch array, staggered (see kStaggerBytes).
template <typename acc_t>
struct Carver {
  static constexpr int64_t kStagger = kStaggerBytes / sizeof(acc_t);
  acc_t* next;
  int64_t used = 0;
  acc_t* take(int64_t size) {
    acc_t* buffer = next ? next + used : nullptr;
    used += size + kStagger;
    return buffer;
  }
};

template <typename scalar_t, typename delta_t>
struct SelectiveScan {
  using acc_t = at::opmath_type<scalar_t>;
  using S = Simd<acc_t>;
  using vec = typename S::vec;
  static constexpr int64_t kLanes = S::kLanes;

  Strided3<const scalar_t> x, B, C;
  Strided3<const delta_t> delta;
  const acc_t* A;       // (d, padded): zeros on the padding lanes (decay 1; they carry no input)
  const acc_t* D;       // (d,)
  const int64_t* order;  // (batch, L), or nullptr: the second tree is the chain
  const int64_t* parent;
  int64_t batch, length, channels, state, padded, block;
  acc_t chain_scale, tree_scale;

  SelectiveScan(const at::Tensor& x_, const at::Tensor& delta_, const at::Tensor& A_padded, const at::Tensor& B_,
                const at::Tensor& C_, const at::Tensor& D_, const at::Tensor& order_, const at::Tensor& parent_,
                double scale)
      : x(x_), B(B_), C(C_), delta(delta_), A(A_padded.data_ptr<acc_t>()), D(D_.data_ptr<acc_t>()),
        order(order_.defined() ? order_.data_ptr<int64_t>() : nullptr),
        parent(parent_.defined() ? parent_.data_ptr<int64_t>() : nullptr),
        batch(x_.size(0)), length(x_.size(1)), channels(x_.size(2)), state(B_.size(2)),
        padded(A_padded.size(1)) {
    const int64_t per_channel = 3 * length * padded * static_cast<int64_t>(sizeof(acc_t));
    block = std::clamp<int64_t>(kBlockScratchBytes / std::max<int64_t>(per_channel, 1), 1, kGroupChannels);
    tree_scale = static_cast<acc_t>(scale);
    chain_scale = order ? acc_t(1) : static_cast<acc_t>(1 + scale);
  }

  int64_t groups() const {
    return (channels + kGroupChannels - 1) / kGroupChannels;
  }
  // Offset of (token t, block channel j) in a block buffer of states.
  int64_t row(int64_t t, int64_t j) const {
    return (t * block + j) * padded;
  }

  // Runs body(b, group, c_begin, c_end, scratch) for every task, in parallel; `scratch`
  // has room for scratch_size() elements (kept per thread between calls).
  template <typename Body>
  void for_each_task(int64_t scratch_size, const Body& body) const {
    const int64_t group_count = groups();
    at::parallel_for(0, batch * group_count, 1, [&](int64_t begin, int64_t end) {
      thread_local std::vector<acc_t> scratch;
      scratch.resize(scratch_size);
      for (int64_t index = begin; index < end; ++index) {
        const int64_t b = index / group_count, group = index % group_count;
        const int64_t c_begin = group * kGroupChannels;
        body(b, group, c_begin, std::min(channels, c_begin + kGroupChannels), scratch.data());
      }
      if (scratch.size() * sizeof(acc_t) > kKeptScratchBytes) std::vector<acc_t>().swap(scratch);
    });
  }

  // ---- the three sweeps shared by forward and backward ----

  // Token order: the decays and u of the block (into `decay`, `inputs`), the chain
  // recurrence (final chain state left in `h`), and either every chain state
  // (kKeepStates, for the backward) or the chain's read-out C h (for the forward).
  template <bool kKeepStates>
  void chain_forward(int64_t c0, int64_t count, const acc_t* B_row, const acc_t* C_row, const acc_t* x_block,
                     const acc_t* delta_block, acc_t* decay, acc_t* inputs, acc_t* states, acc_t* read_out,
                     acc_t* h) const {
    std::fill(h, h + count * padded, acc_t(0));
    for (int64_t t = 0; t < length; ++t) {
      const acc_t* Bt = B_row + t * padded;
      const acc_t* Ct = C_row + t * padded;
      for (int64_t j = 0; j < count; ++j) {
        const acc_t dt = delta_block[t * block + j];
        const acc_t du = dt * x_block[t * block + j];
        const acc_t* Aj = A + (c0 + j) * padded;
        acc_t* hj = h + j * padded;
        const int64_t r = row(t, j);
        vec y{};
        for (int64_t i = 0; i < padded; i += kLanes) {
          const vec a = SimdExp<acc_t>::exp(dt * S::load(Aj + i));
          const vec u = du * S::load(Bt + i);
          const vec next = a * S::load(hj + i) + u;
          S::store(hj + i, next);
          S::store(decay + r + i, a);
          S::store(inputs + r + i, u);
          if (kKeepStates) {
            S::store(states + r + i, next);
          } else {
            y += S::load(Ct + i) * next;
          }
        }
        if (!kKeepStates) read_out[t * block + j] = S::sum(y);
      }
    }
  }

  // Children before parents: s_parent += w_child s_child, in place over `tree`, which
  // holds u on entry. The block's channels of one token are one contiguous run.
  void tree_sweep_up(int64_t b, int64_t count, const acc_t* decay, acc_t* tree) const {
    const int64_t* row_order = order + b * length;
    const int64_t* row_parent = parent + b * length;
    const int64_t run = count * padded;
    for (int64_t k = length - 1; k >= 0; --k) {
      const int64_t v = row_order[k];
      const int64_t p = row_parent[v];
      if (p < 0) continue;
      const int64_t tv = length - 1 - v, tp = length - 1 - p;
      const acc_t* w = decay + row(tv + 1 == length ? 0 : tv + 1, 0);
      const acc_t* s = tree + row(tv, 0);
      acc_t* s_parent = tree + row(tp, 0);
      for (int64_t i = 0; i < run; i += kLanes) {
        S::store(s_parent + i, S::load(s_parent + i) + S::load(w + i) * S::load(s + i));
      }
    }
  }

  // ---- forward ----

  void forward(scalar_t* y_out, acc_t* final_out) const {
    const int64_t row_size = length * padded, block_size = length * block * padded;
    auto carve = [&](acc_t* base) {
      Carver<acc_t> c{base};
      struct {
        acc_t *B_row, *C_row, *x_block, *delta_block, *read_out, *decay, *tree, *h;
      } s{c.take(row_size), c.take(row_size), c.take(length * block), c.take(length * block),
          c.take(length * block), c.take(block_size), c.take(block_size), c.take(block * padded)};
      return std::make_pair(s, c.used);
    };
    for_each_task(carve(nullptr).second, [&](int64_t b, int64_t, int64_t c_begin, int64_t c_end, acc_t* scratch) {
      const auto s = carve(scratch).first;
      load_columns(B, b, 0, state, length, padded, s.B_row);
      load_columns(C, b, 0, state, length, padded, s.C_row);
      for (int64_t c0 = c_begin; c0 < c_end; c0 += block) {
        const int64_t count = std::min(block, c_end - c0);
        load_columns(x, b, c0, count, length, block, s.x_block);
        load_columns(delta, b, c0, count, length, block, s.delta_block);
        chain_forward<false>(c0, count, s.B_row, s.C_row, s.x_block, s.delta_block, s.decay, s.tree, nullptr,
                             s.read_out, s.h);
        if (order) tree_sweep_up(b, count, s.decay, s.tree);
        for (int64_t t = 0; t < length; ++t) {
          const acc_t* Ct = s.C_row + t * padded;
          scalar_t* y_row = y_out + (b * length + t) * channels + c0;
          for (int64_t j = 0; j < count; ++j) {
            acc_t value = chain_scale * s.read_out[t * block + j] + D[c0 + j] * s.x_block[t * block + j];
            if (order) {
              vec tree_y{};
              for (int64_t i = 0; i < padded; i += kLanes) tree_y += S::load(Ct + i) * S::load(s.tree + row(t, j) + i);
              value += tree_scale * S::sum(tree_y);
            }
            y_row[j] = static_cast<scalar_t>(value);
          }
        }
        // The last token is vertex 0, the root.
        for (int64_t j = 0; j < count; ++j) {
          acc_t* final_row = final_out + (b * channels + c0 + j) * state;
          for (int64_t n = 0; n < state; ++n) {
            acc_t value = chain_scale * s.h[j * padded + n];
            if (order) value += tree_scale * s.tree[row(length - 1, j) + n];
            final_row[n] = value;
          }
        }
      }
    });
  }

  // ---- backward ----

  struct Gradients {
    const Strided3<const scalar_t>* grad_y;
    const Strided3<const acc_t>* grad_final;  // nullptr: no gradient for the final state
    scalar_t* x;                               // (B, L, d) contiguous
    delta_t* delta;                            // (B, L, d) contiguous
    acc_t* A_partial;                          // (B, d, N): one row's part
    acc_t* D_partial;                          // (B, d)
    acc_t* B_partial;                          // (groups, B, L, N): one channel group's part
    acc_t* C_partial;
  };

  struct BackwardScratch {
    acc_t *B_row, *C_row, *grad_B_row, *grad_C_row;                              // L x padded
    acc_t *x_block, *delta_block, *grad_y_block, *grad_x_block, *grad_delta_block;  // L x block
    acc_t *decay, *tree, *chain;                                                  // L x block x padded
    acc_t *h, *G, *grad_A, *seed, *zeros;                                         // block x padded
  };

  // Parents first: the parent's row of `tree` already holds its G when a vertex is met;
  // the vertex's forward state is read, then replaced by its own G.
  void tree_backward(int64_t b, int64_t c0, int64_t count, const BackwardScratch& s) const {
    const int64_t* row_order = order + b * length;
    const int64_t* row_parent = parent + b * length;
    for (int64_t k = 0; k < length; ++k) {
      const int64_t v = row_order[k];
      const int64_t p = row_parent[v];
      const int64_t tv = length - 1 - v;
      const int64_t tw = tv + 1 == length ? 0 : tv + 1;  // the token whose decay is w_v
      const acc_t* Bt = s.B_row + tv * padded;
      const acc_t* Ct = s.C_row + tv * padded;
      acc_t* grad_Bt = s.grad_B_row + tv * padded;
      acc_t* grad_Ct = s.grad_C_row + tv * padded;
      for (int64_t j = 0; j < count; ++j) {
        const acc_t gy = tree_scale * s.grad_y_block[tv * block + j];
        const acc_t dt = s.delta_block[tv * block + j];
        const acc_t du = dt * s.x_block[tv * block + j];
        const acc_t dw = s.delta_block[tw * block + j];
        const acc_t* Aj = A + (c0 + j) * padded;
        const acc_t* seed = v == 0 ? s.seed + j * padded : s.zeros;
        const acc_t* G_parent = p >= 0 ? s.tree + row(length - 1 - p, j) : s.zeros;
        const acc_t* w = s.decay + row(tw, j);
        acc_t* state_then_G = s.tree + row(tv, j);
        acc_t* grad_Aj = s.grad_A + j * padded;
        vec G_B{}, q_A{};
        for (int64_t i = 0; i < padded; i += kLanes) {
          const vec sv = S::load(state_then_G + i), gp = S::load(G_parent + i), wv = S::load(w + i);
          S::store(grad_Ct + i, S::load(grad_Ct + i) + gy * sv);
          const vec G = gy * S::load(Ct + i) + tree_scale * S::load(seed + i) + wv * gp;
          S::store(state_then_G + i, G);
          G_B += G * S::load(Bt + i);
          S::store(grad_Bt + i, S::load(grad_Bt + i) + du * G);
          const vec q = gp * sv * wv;
          q_A += q * S::load(Aj + i);
          S::store(grad_Aj + i, S::load(grad_Aj + i) + dw * q);
        }
        const acc_t g_u = S::sum(G_B);
        s.grad_x_block[tv * block + j] += g_u * dt;
        s.grad_delta_block[tv * block + j] += g_u * s.x_block[tv * block + j];
        if (p >= 0) s.grad_delta_block[tw * block + j] += S::sum(q_A);
      }
    }
  }

  // Last token first; G holds the chain gradient of the token after t.
  void chain_backward(int64_t c0, int64_t count, const BackwardScratch& s) const {
    for (int64_t j = 0; j < count; ++j) {
      for (int64_t i = 0; i < padded; ++i) s.G[j * padded + i] = chain_scale * s.seed[j * padded + i];
    }
    for (int64_t t = length - 1; t >= 0; --t) {
      const acc_t* Bt = s.B_row + t * padded;
      const acc_t* Ct = s.C_row + t * padded;
      acc_t* grad_Bt = s.grad_B_row + t * padded;
      acc_t* grad_Ct = s.grad_C_row + t * padded;
      for (int64_t j = 0; j < count; ++j) {
        const acc_t gy = chain_scale * s.grad_y_block[t * block + j];
        const acc_t dt = s.delta_block[t * block + j];
        const acc_t du = dt * s.x_block[t * block + j];
        const acc_t* Aj = A + (c0 + j) * padded;
        // The decay of the next token carries G back here; the last token's G starts
        // from the seed, as if multiplied by a decay of 1.
        const acc_t* a_next = t + 1 < length ? s.decay + row(t + 1, j) : nullptr;
        const acc_t* a = s.decay + row(t, j);
        const acc_t* h = s.chain + row(t, j);
        const acc_t* h_before = t > 0 ? s.chain + row(t - 1, j) : s.zeros;
        acc_t* G = s.G + j * padded;
        acc_t* grad_Aj = s.grad_A + j * padded;
        vec G_B{}, q_A{};
        for (int64_t i = 0; i < padded; i += kLanes) {
          S::store(grad_Ct + i, S::load(grad_Ct + i) + gy * S::load(h + i));
          const vec carried = a_next ? S::load(a_next + i) * S::load(G + i) : S::load(G + i);
          const vec g = gy * S::load(Ct + i) + carried;
          S::store(G + i, g);
          G_B += g * S::load(Bt + i);
          S::store(grad_Bt + i, S::load(grad_Bt + i) + du * g);
          const vec q = g * S::load(h_before + i) * S::load(a + i);
          q_A += q * S::load(Aj + i);
          S::store(grad_Aj + i, S::load(grad_Aj + i) + dt * q);
        }
        const acc_t g_u = S::sum(G_B);
        s.grad_x_block[t * block + j] += g_u * dt;
        s.grad_delta_block[t * block + j] += g_u * s.x_block[t * block + j] + S::sum(q_A);
      }
    }
  }

  void backward(const Gradients& out) const {
    const int64_t row_size = length * padded, column_size = length * block, block_size = length * block * padded;
    const int64_t small = block * padded;
    auto carve = [&](acc_t* base) {
      Carver<acc_t> c{base};
      BackwardScratch s{c.take(row_size),    c.take(row_size),    c.take(row_size),    c.take(row_size),
                        c.take(column_size), c.take(column_size), c.take(column_size), c.take(column_size),
                        c.take(column_size), c.take(block_size),  c.take(block_size),  c.take(block_size),
                        c.take(small),       c.take(small),       c.take(small),       c.take(small),
                        c.take(small)};
      return std::make_pair(s, c.used);
    };
    for_each_task(carve(nullptr).second, [&](int64_t b, int64_t group, int64_t c_begin, int64_t c_end,
                                             acc_t* scratch) {
      const BackwardScratch s = carve(scratch).first;
      load_columns(B, b, 0, state, length, padded, s.B_row);
      load_columns(C, b, 0, state, length, padded, s.C_row);
      std::fill(s.grad_B_row, s.grad_B_row + row_size, acc_t(0));
      std::fill(s.grad_C_row, s.grad_C_row + row_size, acc_t(0));
      std::fill(s.zeros, s.zeros + small, acc_t(0));
      for (int64_t c0 = c_begin; c0 < c_end; c0 += block) {
        const int64_t count = std::min(block, c_end - c0);
        load_columns(x, b, c0, count, length, block, s.x_block);
        load_columns(delta, b, c0, count, length, block, s.delta_block);
        load_columns(*out.grad_y, b, c0, count, length, block, s.grad_y_block);
        std::fill(s.grad_x_block, s.grad_x_block + column_size, acc_t(0));
        std::fill(s.grad_delta_block, s.grad_delta_block + column_size, acc_t(0));
        std::fill(s.grad_A, s.grad_A + small, acc_t(0));
        std::fill(s.seed, s.seed + small, acc_t(0));
        if (out.grad_final) {
          for (int64_t j = 0; j < count; ++j) {
            for (int64_t n = 0; n < state; ++n) s.seed[j * padded + n] = (*out.grad_final)(b, c0 + j, n);
          }
        }
        chain_forward<true>(c0, count, s.B_row, s.C_row, s.x_block, s.delta_block, s.decay, s.tree, s.chain,
                            nullptr, s.h);
        if (order) {
          tree_sweep_up(b, count, s.decay, s.tree);
          tree_backward(b, c0, count, s);
        }
        chain_backward(c0, count, s);
        for (int64_t j = 0; j < count; ++j) {
          acc_t grad_D = 0;
          for (int64_t t = 0; t < length; ++t) {
            const acc_t gy = s.grad_y_block[t * block + j];
            grad_D += gy * s.x_block[t * block + j];
            const int64_t at = (b * length + t) * channels + c0 + j;
            out.x[at] = static_cast<scalar_t>(s.grad_x_block[t * block + j] + gy * D[c0 + j]);
            out.delta[at] = static_cast<delta_t>(s.grad_delta_block[t * block + j]);
          }
          out.D_partial[b * channels + c0 + j] = grad_D;
          std::copy(s.grad_A + j * padded, s.grad_A + j * padded + state,
                    out.A_partial + (b * channels + c0 + j) * state);
        }
      }
      for (int64_t t = 0; t < length; ++t) {
        const int64_t at = ((group * batch + b) * length + t) * state;
        std::copy(s.grad_B_row + t * padded, s.grad_B_row + t * padded + state, out.B_partial + at);
        std::copy(s.grad_C_row + t * padded, s.grad_C_row + t * padded + state, out.C_partial + at);
      }
    });
  }
};

// A as (d, N rounded up to whole SIMD vectors), zeros on the padding lanes.
at::Tensor padded_A(const at::Tensor& A, int64_t lanes) {
  const int64_t state = A.size(1);
  auto padded = at::zeros({A.size(0), (state + lanes - 1) / lanes * lanes}, A.options());
  padded.narrow(1, 0, state).copy_(A);
  return padded;
}

struct TreeTensors {
  at::Tensor order, parent;  // contiguous and checked; undefined for the chain
};

TreeTensors checked_tree(const std::optional<at::Tensor>& tree_order, const std::optional<at::Tensor>& tree_parent) {
  if (!tree_order.has_value()) return {};
  TreeTensors tree{tree_order->contiguous(), tree_parent->contiguous()};
  check_tree(tree.order, tree.parent);
  return tree;
}

template <typename scalar_t, typename delta_t>
void forward_typed(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                   const at::Tensor& C, const at::Tensor& D, const TreeTensors& tree, double tree_scale,
                   at::Tensor& y, at::Tensor& final_state) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto A_in = padded_A(A, Simd<acc_t>::kLanes);
  const SelectiveScan<scalar_t, delta_t> scan(x, delta, A_in, B, C, D, tree.order, tree.parent, tree_scale);
  scan.forward(y.data_ptr<scalar_t>(), final_state.data_ptr<acc_t>());
}

struct GradientTensors {
  at::Tensor grad_y, grad_final;  // grad_final undefined: none
  at::Tensor x, delta, A_partial, D_partial, B_partial, C_partial;
};

template <typename scalar_t, typename delta_t>
void backward_typed(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                    const at::Tensor& C, const at::Tensor& D, const TreeTensors& tree, double tree_scale,
                    GradientTensors& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto A_in = padded_A(A, Simd<acc_t>::kLanes);
  const SelectiveScan<scalar_t, delta_t> scan(x, delta, A_in, B, C, D, tree.order, tree.parent, tree_scale);
  const Strided3<const scalar_t> grad_y(g.grad_y);
  std::optional<Strided3<const acc_t>> grad_final;
  if (g.grad_final.defined()) grad_final.emplace(g.grad_final);
  scan.backward({&grad_y, grad_final ? &*grad_final : nullptr, g.x.data_ptr<scalar_t>(), g.delta.data_ptr<delta_t>(),
                 g.A_partial.data_ptr<acc_t>(), g.D_partial.data_ptr<acc_t>(), g.B_partial.data_ptr<acc_t>(),
                 g.C_partial.data_ptr<acc_t>()});
}

// delta has the dtype of x or its accumulation type (GrootL keeps delta in float32).
#define SELECTIVE_SCAN_DISPATCH(x, delta, function, ...)                                     \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), #function, [&] { \
    if (delta.scalar_type() == x.scalar_type()) {                                             \
      function<scalar_t, scalar_t>(__VA_ARGS__);                                              \
    } else {                                                                                  \
      function<scalar_t, at::opmath_type<scalar_t>>(__VA_ARGS__);                             \
    }                                                                                         \
  })

std::tuple<at::Tensor, at::Tensor> selective_tree_scan_cpu(
    const at::Tensor& x, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const at::Tensor& D, const std::optional<at::Tensor>& tree_order, const std::optional<at::Tensor>& tree_parent,
    double tree_scale, const std::optional<at::TensorList>& /*tree_plan: for device kernels*/) {
  check_inputs("selective_tree_scan", x, delta, A, B, C, D, tree_order, tree_parent);
  auto y = at::empty(x.sizes(), x.options());
  auto final_state = at::zeros({x.size(0), x.size(2), A.size(1)}, A.options());
  if (y.numel() == 0) return {y, final_state};
  const auto tree = checked_tree(tree_order, tree_parent);
  SELECTIVE_SCAN_DISPATCH(x, delta, forward_typed, x, delta, A, B, C, D.contiguous(), tree, tree_scale, y,
                          final_state);
  return {y, final_state};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_tree_scan_backward_cpu(
    const at::Tensor& grad_y, const std::optional<at::Tensor>& grad_final_state, const at::Tensor& x,
    const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
    const std::optional<at::Tensor>& tree_order, const std::optional<at::Tensor>& tree_parent, double tree_scale,
    const std::optional<at::TensorList>& /*tree_plan: for device kernels*/) {
  const char* op = "selective_tree_scan_backward";
  check_inputs(op, x, delta, A, B, C, D, tree_order, tree_parent);
  TORCH_CHECK_VALUE(grad_y.sizes() == x.sizes() && grad_y.device() == x.device(), op,
                    ": grad_y must have the shape and device of x ", x.sizes(), ", got ", grad_y.sizes(), " on ",
                    grad_y.device());
  const std::vector<int64_t> state_shape{x.size(0), x.size(2), A.size(1)};
  if (grad_final_state.has_value()) {
    TORCH_CHECK_VALUE(grad_final_state->sizes() == state_shape && grad_final_state->device() == x.device(), op,
                      ": grad_final_state must be (B, d, N) = ", at::IntArrayRef(state_shape), " on ", x.device(),
                      ", got ", grad_final_state->sizes(), " on ", grad_final_state->device());
  }
  const int64_t batch = x.size(0), length = x.size(1), channels = x.size(2), state = A.size(1);
  const int64_t groups = (channels + kGroupChannels - 1) / kGroupChannels;
  GradientTensors g{grad_y.to(x.scalar_type()),
                    grad_final_state.has_value() ? grad_final_state->to(A.scalar_type()) : at::Tensor(),
                    at::empty(x.sizes(), x.options()),
                    at::empty(delta.sizes(), delta.options()),
                    at::zeros({batch, channels, state}, A.options()),
                    at::zeros({batch, channels}, D.options()),
                    at::zeros({groups, batch, length, state}, A.options()),
                    at::zeros({groups, batch, length, state}, A.options())};
  if (x.numel() > 0) {
    const auto tree = checked_tree(tree_order, tree_parent);
    SELECTIVE_SCAN_DISPATCH(x, delta, backward_typed, x, delta, A, B, C, D.contiguous(), tree, tree_scale, g);
  }
  return {g.x,
          g.delta,
          g.A_partial.sum(0),
          g.B_partial.sum(0).to(B.scalar_type()),
          g.C_partial.sum(0).to(C.scalar_type()),
          g.D_partial.sum(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(tree_scan_lan, CPU, m) {
  m.impl("selective_tree_scan", &selective_tree_scan_cpu);
  m.impl("selective_tree_scan_backward", &selective_tree_scan_backward_cpu);
}

}  // namespace tree_scan
