// Deterministic routing of per-graph outputs (O; dS, dK, dR, dQ) during the tile loop.
//
// Threads take contiguous runs of the block-major tile list (ma_plan.h). A graph block whose
// tiles all belong to one thread is written in place, in tile order. Only the first and the
// last block of a thread's run can be shared with a neighbour; those go to the thread's two
// slot buffers, and reduce_shared() then writes each shared block as the sum of its threads'
// slots taken in thread order. No atomics, and the summation order is a fixed function of the
// plan and the thread count, so results are bitwise reproducible.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/ma_plan.h"
#include "cpu/ma_tile.h"

namespace rstg::cpu {

template <typename T>
class BlockOutputs {
 public:
  struct Output {
    T* base;            // [G, per_graph], zeroed before the tile loop (by the caller)
    int64_t per_graph;  // elements of one graph
  };

  BlockOutputs(const Plan& plan, int threads, std::vector<Output> outputs)
      : plan_(plan), threads_(threads), outputs_(std::move(outputs)) {
    slots_.resize(size_t(threads) * 2);
    for (int t = 0; t < threads; ++t) {
      for (int s = 0; s < 2; ++s) {
        const int64_t b = slot_block(t, s);
        if (b < 0 || !block_shared_with_other_thread(plan_, b, t)) continue;
        int64_t n = 0;
        for (const Output& o : outputs_) n += plan_.graphs_per_block * o.per_graph;
        slots_[size_t(t) * 2 + s] = std::make_unique<Scratch<T>>(n);
      }
    }
  }

  // Zeroes thread `tid`'s slot buffers; call from that thread before its tile loop.
  void zero_slots(int tid) {
    for (int s = 0; s < 2; ++s)
      if (slots_[size_t(tid) * 2 + s]) slots_[size_t(tid) * 2 + s]->zero();
  }

  // out[o] = where thread `tid` accumulates output o of graph block `block` (graph g0 first).
  void targets(int tid, int64_t block, T** out) const {
    const Scratch<T>* slot = nullptr;
    for (int s = 0; s < 2; ++s)
      if (slot_block(tid, s) == block && slots_[size_t(tid) * 2 + s]) slot = slots_[size_t(tid) * 2 + s].get();
    int64_t offset = 0;
    for (size_t o = 0; o < outputs_.size(); ++o) {
      const int64_t g0 = block * plan_.graphs_per_block;
      out[o] = slot ? slot->get() + offset : outputs_[o].base + g0 * outputs_[o].per_graph;
      offset += plan_.graphs_per_block * outputs_[o].per_graph;
    }
  }

  // Call from every thread of the parallel region after the tile loop (and a barrier).
  void reduce_shared(int64_t num_graphs) {
    std::vector<int> owners;  // the threads with tiles in the block, in thread order
    std::vector<const T*> parts;
    for (int64_t b = 0; b < plan_.num_blocks; ++b) {
      const int64_t bf = plan_.block_first_tile[b], bl = plan_.block_first_tile[b + 1];
      owners.clear();
      for (int t = 0; t < threads_; ++t) {
        // A thread with an empty run (possible when a few large hub tiles outweigh the
        // thread count) contributes nothing and has no slot.
        if (plan_.thread_begin[t] < bl && plan_.thread_begin[t + 1] > bf &&
            plan_.thread_begin[t] < plan_.thread_begin[t + 1])
          owners.push_back(t);
      }
      if (owners.size() < 2) continue;  // written in place
      parts.clear();
      for (int t : owners) parts.push_back(slot_of(t, b));
      const int64_t g0 = b * plan_.graphs_per_block;
      const int64_t ng = std::min(plan_.graphs_per_block, num_graphs - g0);
      int64_t offset = 0;
      for (const Output& o : outputs_) {
        const int64_t n = ng * o.per_graph;
        T* dst = o.base + g0 * o.per_graph;
#ifdef RSTG_WITH_OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t k = 0; k < n; ++k) {
          T sum = T(0);
          for (const T* part : parts) sum += part[offset + k];
          dst[k] = sum;
        }
        offset += plan_.graphs_per_block * o.per_graph;
      }
    }
  }

 private:
  // Block of thread t's first (s = 0) or last (s = 1) tile; -1 when it has no tiles.
  int64_t slot_block(int t, int s) const {
    const int64_t a = plan_.thread_begin[t], z = plan_.thread_begin[t + 1];
    if (a >= z) return -1;
    const int64_t b = plan_.tiles[s == 0 ? a : z - 1].block;
    if (s == 1 && b == plan_.tiles[a].block) return -1;  // one block: slot 0 holds it
    return b;
  }
  const T* slot_of(int t, int64_t b) const {
    for (int s = 0; s < 2; ++s)
      if (slot_block(t, s) == b) return slots_[size_t(t) * 2 + s]->get();
    return nullptr;  // unreachable: t has tiles in b, and b is shared
  }

  const Plan& plan_;
  int threads_;
  std::vector<Output> outputs_;
  std::vector<std::unique_ptr<Scratch<T>>> slots_;
};

}  // namespace rstg::cpu
