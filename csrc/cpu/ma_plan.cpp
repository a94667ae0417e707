#include "cpu/ma_plan.h"

#include <algorithm>
#include <cmath>

namespace rstg::cpu {

Plan make_plan(const int64_t* indptr, int64_t num_nodes, int64_t num_graphs, int threads,
               double row_cost, double tile_cost, int64_t row_multiple, int64_t target_rows) {
  Plan plan;
  const int64_t max_rows = 2 * target_rows;
  const int64_t num_edges = indptr[num_nodes];
  int64_t nonempty = 0;
  for (int64_t i = 0; i < num_nodes; ++i) {
    const int64_t deg = indptr[i + 1] - indptr[i];
    nonempty += deg > 0;
    plan.max_degree = std::max(plan.max_degree, deg);
  }
  const double mean_degree = nonempty ? double(num_edges) / double(nonempty) : 1.0;
  // A multiple of the micro-tile's rows, so every tile's rows (graphs x edges) are too and
  // no row of a product is padding (paper: 16 graphs of 14 nodes, 6.4 sources on average).
  int64_t gpb = std::llround(double(target_rows) / mean_degree / double(row_multiple)) * row_multiple;
  gpb = std::clamp<int64_t>(gpb, 1, std::max<int64_t>(num_graphs, 1));
  plan.graphs_per_block = gpb;
  plan.num_blocks = (num_graphs + gpb - 1) / gpb;

  plan.block_first_tile.push_back(0);
  for (int64_t b = 0; b < plan.num_blocks; ++b) {
    const int64_t g0 = b * gpb;
    const int64_t ng = std::min(gpb, num_graphs - g0);
    for (int64_t i = 0; i < num_nodes; ++i) {
      const int64_t e0 = indptr[i], deg = indptr[i + 1] - e0;
      if (deg == 0) continue;
      // Split a hub into `pieces` edge ranges of near-equal size, each <= max_rows rows.
      const int64_t pieces = (ng * deg + max_rows - 1) / max_rows;
      for (int64_t p = 0; p < pieces; ++p) {
        const int64_t a = e0 + deg * p / pieces, z = e0 + deg * (p + 1) / pieces;
        if (z > a) plan.tiles.push_back({g0, ng, i, a, z, b});
        plan.max_rows = std::max(plan.max_rows, ng * (z - a));
      }
    }
    plan.block_first_tile.push_back(int64_t(plan.tiles.size()));
  }

  // Contiguous runs of near-equal cost: thread t starts at the first tile whose cost
  // midpoint passes t / threads of the total.
  const int64_t n = int64_t(plan.tiles.size());
  std::vector<double> prefix(n + 1, 0.0);
  for (int64_t k = 0; k < n; ++k) {
    const Tile& t = plan.tiles[k];
    prefix[k + 1] = prefix[k] + tile_cost + row_cost * double(t.ng * (t.e1 - t.e0));
  }
  plan.thread_begin.assign(threads + 1, n);
  int64_t k = 0;
  for (int t = 0; t < threads; ++t) {
    const double start = prefix[n] * double(t) / double(threads);
    while (k < n && 0.5 * (prefix[k] + prefix[k + 1]) < start) ++k;
    plan.thread_begin[t] = k;
  }
  plan.thread_begin[threads] = n;
  return plan;
}

bool block_shared_with_other_thread(const Plan& plan, int64_t block, int thread) {
  const int64_t first = plan.block_first_tile[block], last = plan.block_first_tile[block + 1];
  return first < plan.thread_begin[thread] || last > plan.thread_begin[thread + 1];
}

}  // namespace rstg::cpu
