// The one argument struct of the message_attention entry points, CPU and CUDA.
//
// Named fields instead of 19-26 positional addresses: python_bindings/ma_args.h fills it from
// a Python dict by the names listed in for_each_field below (a missing size or an unknown name
// is a ValueError naming it), and rstg_fast/ops/backends/{cpu.py,cuda/launch.py} build that
// dict. Buffers are contiguous row-major, on the entry point's device, owned by the caller;
// pointers a call does not use stay null (W2/b2/dW2/db2 for one send layer: has_w2() false).
#pragma once
#include <cstdint>

namespace rstg {

// Element type of the floating buffers (CPU: float32/float64; CUDA: float32/float16/bfloat16).
enum MaDtype : int64_t { kMaFloat32 = 0, kMaFloat16 = 1, kMaBFloat16 = 2, kMaFloat64 = 3 };

// One orientation of the CUDA work plan (by destination, or transposed by source), int32
// device arrays built by rstg_fast/ops/backends/cuda/plan.py.
struct MaPlan {
  const int32_t* item_node = nullptr;   // [items] owner node u of the item
  const int32_t* item_begin = nullptr;  // [items] first position in `other`
  const int32_t* item_end = nullptr;    // [items] one past the last position
  const int32_t* item_slot = nullptr;   // [items] partial slot, -1 for its node's whole row
  const int32_t* other = nullptr;       // [E] the other end of each edge (src by dst, dst by src)
  const int32_t* split_node = nullptr;  // [splits] nodes cut into several items
  const int32_t* split_ptr = nullptr;   // [splits + 1] slot range of each split node
  int64_t items = 0, splits = 0, slots = 0;
};

struct MaArgs {
  // ---- the problem (required)
  int64_t dtype = -1;                      // MaDtype of every floating buffer
  int64_t G = -1, N = -1, E = -1;          // graphs, nodes, edges
  int64_t Hd = -1, D = -1, A = -1, heads = -1;
  double scale = 0.0;                      // score scale
  // ---- the op's tensors
  const void* S = nullptr;                 // [G, N, Hd]
  const void* R = nullptr;                 // [G, N, Hd]
  const void* Q = nullptr;                 // [G, N, A]
  const void* K = nullptr;                 // [G, N, A]
  const void* W2 = nullptr;                // [D, Hd] or null (one send layer, D == Hd)
  const void* b2 = nullptr;                // [D] or null
  const int64_t* indptr = nullptr;         // [N + 1] CSR by destination (CPU)
  const int64_t* indices = nullptr;        // [E] sources (CPU)
  void* O = nullptr;                       // [G, N, D]: forward output, backward input
  void* lse = nullptr;                     // [G, N, heads] (CPU: dtype; CUDA: float32), same
  const void* dO = nullptr;                // [G, N, D] backward
  void* dS = nullptr;                      // [G, N, Hd] backward outputs ...
  void* dR = nullptr;                      // [G, N, Hd]
  void* dQ = nullptr;                      // [G, N, A]
  void* dK = nullptr;                      // [G, N, A]
  void* dW2 = nullptr;                     // [D, Hd] or null
  void* db2 = nullptr;                     // [D] or null
  // ---- CPU
  int64_t threads = 1;                     // OpenMP threads
  // ---- CUDA: stream, plans, float32 scratch (csrc/cuda/message_attention_*.cu, top comments)
  void* stream = nullptr;                  // cudaStream_t; the entry points are asynchronous
  MaPlan d, s;                             // plan by destination; by source (deterministic)
  int64_t deterministic = 0;               // backward: second, source-major pass for dS, dK
  int64_t blocks = 1;                      // backward: persistent grid, [1, 65535]
  float* o_part = nullptr;                 // [d.slots, G, D]
  float* lse_part = nullptr;               // [d.slots, G, heads]
  float* delta = nullptr;                  // [G, N, heads]
  float* d_part_h = nullptr;               // [d.slots, G, Hd]
  float* d_part_qk = nullptr;              // [d.slots, G, A]
  float* s_part_h = nullptr;               // [s.slots, G, Hd] (deterministic)
  float* s_part_qk = nullptr;              // [s.slots, G, A] (deterministic)
  float* acc_dS = nullptr;                 // [G, N, Hd] zeroed (atomic mode)
  float* acc_dK = nullptr;                 // [G, N, A] zeroed (atomic mode)
  float* w2_slots = nullptr;               // [blocks, pad32(D), pad32(Hd)] zeroed
  float* b2_slots = nullptr;               // [blocks, pad32(D)] zeroed

  bool has_w2() const { return W2 != nullptr; }
};

// Calls f(name, field, required) for every field, in one fixed order: the names the Python
// side uses. The plan fields are "d_item_node", ..., "s_slots".
template <typename F>
void for_each_field(MaArgs& a, F&& f) {
  f("dtype", a.dtype, true);
  f("G", a.G, true);
  f("N", a.N, true);
  f("E", a.E, true);
  f("Hd", a.Hd, true);
  f("D", a.D, true);
  f("A", a.A, true);
  f("heads", a.heads, true);
  f("scale", a.scale, true);
  f("S", a.S, false);
  f("R", a.R, false);
  f("Q", a.Q, false);
  f("K", a.K, false);
  f("W2", a.W2, false);
  f("b2", a.b2, false);
  f("indptr", a.indptr, false);
  f("indices", a.indices, false);
  f("O", a.O, false);
  f("lse", a.lse, false);
  f("dO", a.dO, false);
  f("dS", a.dS, false);
  f("dR", a.dR, false);
  f("dQ", a.dQ, false);
  f("dK", a.dK, false);
  f("dW2", a.dW2, false);
  f("db2", a.db2, false);
  f("threads", a.threads, false);
  f("stream", a.stream, false);
  for (MaPlan* p : {&a.d, &a.s}) {
    const bool by_dst = p == &a.d;
    f(by_dst ? "d_item_node" : "s_item_node", p->item_node, false);
    f(by_dst ? "d_item_begin" : "s_item_begin", p->item_begin, false);
    f(by_dst ? "d_item_end" : "s_item_end", p->item_end, false);
    f(by_dst ? "d_item_slot" : "s_item_slot", p->item_slot, false);
    f(by_dst ? "d_other" : "s_other", p->other, false);
    f(by_dst ? "d_split_node" : "s_split_node", p->split_node, false);
    f(by_dst ? "d_split_ptr" : "s_split_ptr", p->split_ptr, false);
    f(by_dst ? "d_items" : "s_items", p->items, false);
    f(by_dst ? "d_splits" : "s_splits", p->splits, false);
    f(by_dst ? "d_slots" : "s_slots", p->slots, false);
  }
  f("deterministic", a.deterministic, false);
  f("blocks", a.blocks, false);
  f("o_part", a.o_part, false);
  f("lse_part", a.lse_part, false);
  f("delta", a.delta, false);
  f("d_part_h", a.d_part_h, false);
  f("d_part_qk", a.d_part_qk, false);
  f("s_part_h", a.s_part_h, false);
  f("s_part_qk", a.s_part_qk, false);
  f("acc_dS", a.acc_dS, false);
  f("acc_dK", a.acc_dK, false);
  f("w2_slots", a.w2_slots, false);
  f("b2_slots", a.b2_slots, false);
}

}  // namespace rstg
