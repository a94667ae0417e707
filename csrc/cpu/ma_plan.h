// Work plan of the CPU message_attention kernels: which (graph block, destination, edge
// range) tiles exist, and which contiguous run of them each thread takes.
//
// All G graphs share one CSR, so a tile takes the edges [e0, e1) of destination `dst` in
// the graphs [g0, g0 + ng): ng * (e1 - e0) rows that share R[:, dst], Q[:, dst] and one
// index list. Graph blocks have a fixed size (a multiple of the micro-tile rows) chosen so
// an average destination gives about target_rows rows; a destination whose block exceeds
// 2 * target_rows rows (a skewed hub such as the 1x1 node of `huge`, 1,038 sources) is cut into
// several edge ranges, so it never serialises on one thread.
//
// The tile list depends only on the graph and the sizes, never on the thread count. Threads
// take contiguous, cost-balanced runs of it (static), which makes every per-thread partial
// sum (dW2, the scattered dS/dK, and outputs of graph blocks shared by two threads) a fixed
// function of the thread count: results are bitwise reproducible run to run.
#pragma once
#include <cstdint>
#include <vector>

namespace rstg::cpu {

struct Tile {
  int64_t g0, ng;  // graphs [g0, g0 + ng)
  int64_t dst;     // destination node
  int64_t e0, e1;  // edges [e0, e1) of CSR row dst
  int64_t block;   // graph block index (g0 / graphs_per_block)
};

struct Plan {
  int64_t graphs_per_block = 1;
  int64_t num_blocks = 0;
  int64_t max_rows = 0;   // largest ng * (e1 - e0) over tiles
  int64_t max_degree = 0;
  std::vector<Tile> tiles;               // block-major, then destination, then edge range
  std::vector<int64_t> thread_begin;     // [threads + 1]: thread t takes tiles [begin[t], begin[t+1])
  std::vector<int64_t> block_first_tile; // [num_blocks + 1]
};

// Rows an average tile aims at; a tile never exceeds twice that. The forward's one product
// per row prefers tiles that stay in L2 beside the packed W2 (96 rows measured best at
// `paper`); the backward prefers 192, because its dW2 += dz^T @ h product loads and stores
// the whole dW2 partial once per tile, and longer tiles (K = rows) amortise that
// (paper forward+backward 72 -> 70 ms on this 2-core Xeon).
constexpr int64_t kForwardTileRows = 96;
constexpr int64_t kBackwardTileRows = 192;

// indptr [N+1]; row_cost: cost of one tile row (about the FLOPs of its products);
// tile_cost: fixed cost of one tile (per-graph epilogues and index loads); row_multiple:
// graph blocks are a multiple of it when they hold more than half of it (the micro-tile
// rows, so tiles need no padding rows); target_rows: kForwardTileRows or kBackwardTileRows.
Plan make_plan(const int64_t* indptr, int64_t num_nodes, int64_t num_graphs, int threads,
               double row_cost, double tile_cost, int64_t row_multiple, int64_t target_rows);

// The first and last graph block that thread t touches are shared with a neighbour when
// another thread also has tiles in them; such blocks go through per-thread buffers.
bool block_shared_with_other_thread(const Plan& plan, int64_t block, int thread);

}  // namespace rstg::cpu
