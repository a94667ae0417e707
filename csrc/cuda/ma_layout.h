// Tile sizes, the shared-memory layout and the launch limits of the message_attention CUDA
// kernels: plain C++, so that the module exposes them on every build (a CPU-only one too) and
// the Python planner (rstg_fast/ops/backends/cuda/plan.py) reads them instead of copying them.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#ifdef __CUDACC__
#define RSTG_HOST_DEVICE __host__ __device__
#else
#define RSTG_HOST_DEVICE
#endif

namespace rstg {
namespace ma {

constexpr int kThreads = 128;  // 4 warps; each warp owns one 16-column slice of a TN tile
constexpr int kWarps = kThreads / 32;
constexpr int kTN = 64;        // output columns per MMA tile (= 16 * kWarps)
constexpr int kTK = 32;        // reduction slice of W2 staged per step; Hd, D padded to it
constexpr int kBG = 8;         // graphs per task
constexpr int kChunk = 32;     // most edges per item (longer rows are split)
constexpr int kPadBytes = 16;  // row skew of shared tiles against bank conflicts
constexpr int64_t kSmemCap = 160 * 1024;  // below sm_80's 163 KiB opt-in maximum
static_assert(kTN == 16 * kWarps, "one 16-wide fragment column per warp");

RSTG_HOST_DEVICE constexpr int pad32(int x) { return (x + kTK - 1) / kTK * kTK; }
RSTG_HOST_DEVICE constexpr int64_t align128(int64_t bytes) { return (bytes + 127) / 128 * 128; }
RSTG_HOST_DEVICE inline int64_t graph_groups(int64_t G) { return (G + kBG - 1) / kBG; }

// Byte offsets of the shared buffers. Forward and backward use different subsets; absent
// buffers have size 0. Every offset is 128-byte aligned (WMMA needs 32).
struct Layout {
  int tm, ldh, ldw, ldb, ldz, ldd;  // rows per tile; leading dims (elements)
  int64_t h, w2, z, dz, oacc, sc, lse, rows, dpp, a, ds, own_h, own_qk, total;
};

RSTG_HOST_DEVICE inline Layout make_layout(bool backward, int es, int Hd, int D, int A, int heads,
                                           bool has_w2) {
  Layout L{};
  const int pad = kPadBytes / es;
  L.tm = es == 4 ? 16 : 32;
  L.ldh = pad32(Hd) + pad;
  L.ldw = kTK + pad;  // W2 slice [kTN][kTK] (B of z = h W2^T, col-major)
  L.ldb = kTN + pad;  // W2 slice [kTK][kTN] (B of dh = dz W2, row-major)
  L.ldz = kTN + 4;
  L.ldd = pad32(D) + pad;
  const int64_t w2_elems =
      (int64_t)kTN * L.ldw > (int64_t)kTK * L.ldb ? (int64_t)kTN * L.ldw : (int64_t)kTK * L.ldb;
  int64_t off = 0;
  auto take = [&off](int64_t bytes) {
    const int64_t at = off;
    off += align128(bytes);
    return at;
  };
  L.h = take((int64_t)L.tm * L.ldh * es);
  L.w2 = take(has_w2 ? w2_elems * es : 0);
  L.z = take(has_w2 ? (int64_t)L.tm * L.ldz * 4 : 0);
  L.rows = take((int64_t)L.tm * 4 * 4);
  if (!backward) {
    L.oacc = take((int64_t)kBG * D * 4);
    L.sc = take((int64_t)kBG * kChunk * heads * 4);
    L.lse = take((int64_t)kBG * heads * 4);
  } else {
    L.dz = take(has_w2 ? (int64_t)L.tm * L.ldd * es : 0);
    L.dpp = take((int64_t)kThreads * heads * 4);
    L.a = take((int64_t)L.tm * heads * 4);
    L.ds = take((int64_t)L.tm * heads * 4);
    L.own_h = take((int64_t)kBG * Hd * 4);
    L.own_qk = take((int64_t)kBG * A * 4);
  }
  L.total = off;
  return L;
}

// The sizes every launcher checks before any launch.
struct Dims {
  int64_t G, N, E, Hd, D, A, heads;
  bool has_w2;
};

// Throws std::invalid_argument (Python ValueError) for shapes the kernels do not support;
// `es` is the element size in bytes, `who` names the caller in the message. Called by the
// C++ launchers and, before any allocation, by the Python launcher (through the module).
inline void check_limits(const Dims& d, int es, const char* who) {
  auto fail = [who](const std::string& what) {
    throw std::invalid_argument(std::string("message_attention cuda backend (") + who +
                                "): " + what);
  };
  if (d.G < 1 || d.N < 1 || d.Hd < 1 || d.D < 1 || d.A < 1 || d.heads < 1)
    fail("G, N, Hd, D, A and heads must be positive, got G=" + std::to_string(d.G) +
         " N=" + std::to_string(d.N) + " Hd=" + std::to_string(d.Hd) + " D=" +
         std::to_string(d.D) + " A=" + std::to_string(d.A) + " heads=" + std::to_string(d.heads));
  if (d.A % d.heads || d.D % d.heads) fail("heads must divide A and D");
  if (!d.has_w2 && d.D != d.Hd) fail("D must equal Hd without W2");
  const int64_t int_max = 0x7fffffff;
  if (d.N >= int_max || d.E >= int_max || d.G >= int_max)
    fail("G, N and E must be below 2^31, got G=" + std::to_string(d.G) +
         " N=" + std::to_string(d.N) + " E=" + std::to_string(d.E));
  if (d.Hd > (1 << 20) || d.D > (1 << 20) || d.A > (1 << 20))
    fail("widths over 2^20 (Hd=" + std::to_string(d.Hd) + ", D=" + std::to_string(d.D) +
         ", A=" + std::to_string(d.A) + "): shared memory per block would exceed the kernel limit");
  const int64_t fwd =
      make_layout(false, es, int(d.Hd), int(d.D), int(d.A), int(d.heads), d.has_w2).total;
  const int64_t bwd =
      make_layout(true, es, int(d.Hd), int(d.D), int(d.A), int(d.heads), d.has_w2).total;
  if (fwd > kSmemCap || bwd > kSmemCap)
    fail("shared memory per block would be " + std::to_string(fwd > bwd ? fwd : bwd) +
         " bytes, over the kernel limit of " + std::to_string(kSmemCap) + " (Hd=" +
         std::to_string(d.Hd) + ", D=" + std::to_string(d.D) + ", A=" + std::to_string(d.A) +
         ", heads=" + std::to_string(d.heads) + ", " + std::to_string(8 * es) +
         "-bit); use a smaller width or the triton backend");
  // the most items a plan can have: one per node plus one per kChunk edges
  if ((d.N * kChunk + d.E) / kChunk * graph_groups(d.G) >= int_max)
    fail("too many tasks for one launch (G=" + std::to_string(d.G) + ", N=" +
         std::to_string(d.N) + ", E=" + std::to_string(d.E) + ")");
}

}  // namespace ma
}  // namespace rstg
