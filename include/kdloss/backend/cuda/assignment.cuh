// kdloss/backend/cuda/assignment.cuh: the GPU backend of a batched linear-sum-assignment call
// (expr/assignment.hpp), scipy's exact assignment with no host synchronisation.
//
// One launch for the whole batch: one block per problem (kThreads threads), each in its own slot of
// the workspace. Inside a block the algorithm is the host backend's (backend/cpu/assignment.hpp),
// step for step and in float64, with the work that is parallel spread over the threads:
//   - the float64 working copy (transposed when cols < rows, negated for maximize) and the NaN/-inf
//     test (__syncthreads_or), the per-row resets and the dual updates: one element per thread;
//   - each search step's scan of the remaining columns: thread t relaxes positions t, t + kThreads, ...
//     in order and applies scipy's sequential test (spc < lowest, or == lowest and unassigned) to its
//     own positions; the block then merges the threads' picks with the same rule as the host's vector
//     lanes (least cost; among the ties the largest unassigned position, else the smallest position),
//     which is exactly what scipy's single sequential scan picks;
//   - the O(1) bookkeeping of a step, the undoing of the removals and the augmentation run on thread 0.
// The results, count and status are written by the kernel; nothing is read back on the host, so the
// call can be captured in a CUDA graph. Problems of different sizes share the launch (ragged).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kdloss/backend/cuda/runtime.cuh"
#include "kdloss/config.hpp"
#include "kdloss/core/convert.hpp"
#include "kdloss/expr/assignment.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace backend::cuda::assignment {

inline constexpr int kThreads = 128;

namespace detail {

namespace status = ::kdloss::expr::assignment_status;

/// A thread's (or a group of threads') pick: least cost `lo`, its position `idx` (-1: none), whether
/// that position's column is unassigned.
struct Pick {
  double lo;
  long long idx;
  int free;
};

/// scipy's rule on two picks over disjoint position sets (associative and commutative).
__device__ __forceinline__ Pick merge(const Pick& a, const Pick& b) {
  if (b.idx < 0) return a;
  if (a.idx < 0) return b;
  if (a.lo < b.lo) return a;
  if (b.lo < a.lo) return b;
  if (a.free && b.free) return a.idx > b.idx ? a : b;
  if (a.free) return a;
  if (b.free) return b;
  return a.idx < b.idx ? a : b;
}

__device__ __forceinline__ Pick shfl_down(const Pick& p, int d) {
  Pick o;
  o.lo = __shfl_down_sync(0xffffffffu, p.lo, d);
  o.idx = __shfl_down_sync(0xffffffffu, p.idx, d);
  o.free = __shfl_down_sync(0xffffffffu, p.free, d);
  return o;
}

/// The block's merged pick (valid in thread 0).
__device__ __forceinline__ Pick block_pick(Pick p, Pick* warp_picks) {
  for (int d = 16; d > 0; d >>= 1) p = merge(p, shfl_down(p, d));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_picks[warp] = p;
  __syncthreads();
  if (warp == 0) {
    p = lane < kThreads / 32 ? warp_picks[lane] : Pick{0.0, -1, 0};
    for (int d = 16; d > 0; d >>= 1) p = merge(p, shfl_down(p, d));
  }
  return p;
}

__device__ __forceinline__ void swap_positions(const expr::AssignmentSlotPointers& S, long long a, long long b) {
  long long c = S.col[a];
  S.col[a] = S.col[b], S.col[b] = c;
  double x = S.vw[a];
  S.vw[a] = S.vw[b], S.vw[b] = x;
  x = S.spcw[a];
  S.spcw[a] = S.spcw[b], S.spcw[b] = x;
  c = S.pathw[a];
  S.pathw[a] = S.pathw[b], S.pathw[b] = c;
  c = S.freew[a];
  S.freew[a] = S.freew[b], S.freew[b] = c;
}

/// The state thread 0 shares with the block during one row's search.
struct Step {
  long long num, visited, sink, row, st;
  double minVal;
};

/// Solves the N x M problem (N <= M) whose working copy is in S; returns the status (all threads).
__device__ inline long long solve(const expr::AssignmentSlotPointers& S, long long N, long long M, Step& sh,
                           Pick* warp_picks) {
  const double inf = __longlong_as_double(0x7ff0000000000000LL);
  const int tid = threadIdx.x;
  for (long long i = tid; i < N; i += kThreads) S.u[i] = 0, S.col4row[i] = -1;
  for (long long p = tid; p < M; p += kThreads) {
    S.col[p] = M - 1 - p, S.vw[p] = 0, S.freew[p] = -1, S.pathw[p] = -1;
    S.row4col[p] = -1;
  }
  for (long long cur = 0; cur < N; ++cur) {
    for (long long p = tid; p < M; p += kThreads) S.spcw[p] = inf;
    if (tid == 0) sh.num = M, sh.visited = 0, sh.sink = -1, sh.row = cur, sh.st = status::ok, sh.minVal = 0;
    __syncthreads();
    while (true) {
      const long long num = sh.num, i = sh.row;
      const double minVal = sh.minVal, ui = S.u[i];
      const double* crow = S.cost + i * M;
      Pick mine{inf, -1, 0};
      double lo = inf;
      for (long long p = tid; p < num; p += kThreads) {  // scipy's scan, on this thread's positions
        const double r = minVal + crow[S.col[p]] - ui - S.vw[p];
        double s = S.spcw[p];
        if (r < s) {
          S.pathw[p] = i;
          S.spcw[p] = s = r;
        }
        const bool f = S.freew[p] != 0;
        if (s < lo || (s == lo && f)) {  // scipy's test, over this thread's positions in scan order
          lo = s;
          mine = Pick{s, p, f ? 1 : 0};
        }
      }
      __syncthreads();  // every relaxation is stored before thread 0 reads and swaps
      const Pick best = block_pick(mine, warp_picks);
      if (tid == 0) {
        if (best.idx < 0 || !(best.lo < inf)) {
          sh.st = status::infeasible;  // scipy: minVal == INFINITY
        } else {
          const long long k = best.idx;
          S.visited[sh.visited++] = i;
          sh.minVal = S.spcw[k];
          const long long j = S.col[k];
          if (S.freew[k])
            sh.sink = j;
          else
            sh.row = S.row4col[j];
          S.removed[M - num] = k;
          S.scanned[M - num] = j;
          sh.num = num - 1;
          swap_positions(S, k, num - 1);
        }
      }
      __syncthreads();
      if (sh.st != status::ok || sh.sink != -1) break;
    }
    if (sh.st != status::ok) return sh.st;
    if (tid == 0)  // back to scipy's initial scan order (column j at position M - 1 - j)
      for (long long t = M - sh.num - 1; t >= 0; --t) swap_positions(S, S.removed[t], M - 1 - t);
    __syncthreads();
    const double minVal = sh.minVal;
    const long long scanned = M - sh.num;
    for (long long t = 1 + tid; t < sh.visited; t += kThreads) {
      const long long r = S.visited[t];
      S.u[r] += minVal - S.spcw[M - 1 - S.col4row[r]];
    }
    for (long long t = tid; t < scanned; t += kThreads) {
      const long long p = M - 1 - S.scanned[t];
      S.vw[p] -= minVal - S.spcw[p];
    }
    __syncthreads();
    if (tid == 0) {
      S.u[cur] += minVal;
      long long j = sh.sink;
      while (true) {
        const long long r = S.pathw[M - 1 - j];
        S.row4col[j] = r;
        const long long c = S.col4row[r];
        S.col4row[r] = j;
        j = c;
        if (r == cur) break;
      }
      S.freew[M - 1 - sh.sink] = 0;
    }
    __syncthreads();
  }
  return status::ok;
}

template <class T>
__global__ void __launch_bounds__(kThreads) lsa_kernel(expr::AssignmentBatch<T> P, unsigned char* workspace,
                                                       expr::AssignmentSlot layout) {
  __shared__ Step sh;
  __shared__ Pick warp_picks[kThreads / 32];
  const long long b = blockIdx.x;
  const int tid = threadIdx.x;
  const long long K = P.K();
  std::int64_t* ri = P.row_ind + b * P.ri0;
  std::int64_t* ci = P.col_ind + b * P.ci0;
  std::int64_t nr = 0, nc = 0;
  expr::problem_size(P, b, nr, nc);
  long long st = status::ok, pairs = 0;
  if (nr < 0 || nr > P.Q || nc < 0 || nc > P.Tn) {
    st = status::bad_size;
  } else if (nr > 0 && nc > 0) {
    const expr::AssignmentSlotPointers S = layout.at(workspace + static_cast<std::size_t>(b) * layout.bytes);
    const bool transpose = nc < nr;
    const long long N = transpose ? nc : nr, M = transpose ? nr : nc;
    int bad = 0;
    for (long long e = tid; e < N * M; e += kThreads) {
      const long long a = e / M, c = e % M;
      const long long i = transpose ? c : a, j = transpose ? a : c;
      double x = kdloss::convert<double>(P.cost[b * P.cs0 + i * P.cs1 + j * P.cs2]);
      if (P.maximize) x = -x;
      if (x != x || x == -__longlong_as_double(0x7ff0000000000000LL)) bad = 1;
      S.cost[e] = x;
    }
    if (__syncthreads_or(bad)) {
      st = status::invalid;
    } else {
      st = solve(S, N, M, sh, warp_picks);
    }
    if (st == status::ok) {
      pairs = N;
      if (!transpose) {
        for (long long a = tid; a < N; a += kThreads) ri[a * P.ri1] = a, ci[a * P.ci1] = S.col4row[a];
      } else {  // pairs sorted by the original row, as scipy's argsort of col4row
        for (long long r = tid; r < M; r += kThreads) S.row4col[r] = -1;
        __syncthreads();
        for (long long a = tid; a < N; a += kThreads) S.row4col[S.col4row[a]] = a;
        __syncthreads();
        if (tid == 0) {
          long long k = 0;
          for (long long r = 0; r < M; ++r)
            if (S.row4col[r] >= 0) ri[k * P.ri1] = r, ci[k * P.ci1] = S.row4col[r], ++k;
        }
      }
    }
  }
  for (long long k = pairs + tid; k < K; k += kThreads) ri[k * P.ri1] = -1, ci[k * P.ci1] = -1;
  if (tid == 0) {
    if (P.count) P.count[b * P.count_stride] = pairs;
    if (P.status) P.status[b * P.status_stride] = st;
  }
}

}  // namespace detail

/// Launches one block per problem on `stream`; `workspace` holds one slot per problem.
template <class T>
void run(const expr::AssignmentBatch<T>& P, void* workspace, cudaStream_t stream) {
  if (P.batch == 0) return;
  const expr::AssignmentSlot layout = expr::AssignmentSlot::make(P.slot_rows(), P.slot_cols());
  detail::lsa_kernel<T><<<static_cast<unsigned>(P.batch), kThreads, 0, stream>>>(
      P, static_cast<unsigned char*>(workspace), layout);
  check_launch("kdloss::ops::linear_sum_assignment");
}

} } }  // namespace kdloss::backend::cuda::assignment
