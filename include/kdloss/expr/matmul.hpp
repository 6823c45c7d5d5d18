// kdloss/expr/matmul.hpp: the plain-data description of a batched, strided matrix product that the
// backends evaluate (backend/cpu/gemm.hpp, backend/cuda/gemm.cuh):
//
//   for every batch b:  C[b] = epilogue(alpha * A[b] B[b] + beta * C[b], b, i, j)
//   or, with sum_batches, one C = epilogue(alpha * sum_b A[b] B[b] + beta * C)   (b in increasing order)
//
// Transposes are already folded into the operand strides: A is the logical m x k matrix, B the logical
// k x n one. Strides are in elements and may be anything a view can hold (a stride-0 batch broadcasts
// an operand, a stride-0 row or column repeats one, non-unit inner strides come from slices).
#pragma once
#include <cstdint>

#include "kdloss/config.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace expr {

/// One operand: element (b, r, c) lives at data[b * batch + r * row + c * col].
template <class T>
struct MatOperand {
  T* data = nullptr;
  std::int64_t batch = 0, row = 0, col = 0;
  KDLOSS_HOST_DEVICE T* at(std::int64_t b, std::int64_t r, std::int64_t c) const {
    return data + b * batch + r * row + c * col;
  }
  /// The same memory read as its transpose.
  MatOperand transposed() const { return {data, batch, col, row}; }
};

/// The epilogue that keeps the product as it is. Epilogues are HOST_DEVICE functors
///   template <class V> V operator()(V value, std::int64_t b, std::int64_t i, std::int64_t j) const;
/// applied once to every final element of C (after alpha, beta and every batch of a sum).
struct NoEpilogue {
  static constexpr bool kIdentity = true;
  template <class V>
  KDLOSS_HOST_DEVICE V operator()(V v, std::int64_t, std::int64_t, std::int64_t) const {
    return v;
  }
};

template <class E>
struct is_identity_epilogue {
  static constexpr bool value = false;
};
template <>
struct is_identity_epilogue<NoEpilogue> {
  static constexpr bool value = true;
};

/// C = epilogue(alpha * A B + beta * C) over `batch` products (see the file comment). beta = 0 never
/// reads C; alpha = 0 or k = 0 never reads A or B (BLAS's rule), so C = epilogue(beta * C) then.
template <class TA, class TB, class TC, class Epilogue = NoEpilogue>
struct Gemm {
  std::int64_t batch = 1, m = 0, n = 0, k = 0;
  MatOperand<const TA> a;
  MatOperand<const TB> b;
  MatOperand<TC> c;  // c.batch is ignored when sum_batches
  double alpha = 1.0, beta = 0.0;
  bool sum_batches = false;
  Epilogue epilogue{};

  /// True when the product term vanishes and C = epilogue(beta * C).
  bool scale_only() const { return k == 0 || batch == 0 || alpha == 0.0; }
  /// Output matrices written.
  std::int64_t outputs() const { return sum_batches ? 1 : batch; }
};

/// How a column-major BLAS (cuBLAS) reads an operand of rows x cols: as stored (op N, column-major
/// with leading dimension ld), as the transpose of a column-major matrix (op T: the operand is row-major
/// with ld), or not at all (a zero, negative or non-unit inner stride, or an ld below the minimum):
/// then it is packed first.
struct BlasLayout {
  bool ok = false;
  bool trans = false;
  std::int64_t ld = 1;
};
inline BlasLayout blas_layout(std::int64_t rows, std::int64_t cols, std::int64_t row_stride, std::int64_t col_stride) {
  // A unit extent has no meaningful stride along it.
  if (rows <= 1) row_stride = 1;
  if (cols <= 1) col_stride = 1;
  const std::int64_t min_n = rows > 1 ? rows : 1, min_t = cols > 1 ? cols : 1;
  if (row_stride == 1 && (cols <= 1 || col_stride >= min_n)) return {true, false, cols <= 1 ? min_n : col_stride};
  if (col_stride == 1 && (rows <= 1 || row_stride >= min_t)) return {true, true, rows <= 1 ? min_t : row_stride};
  return {};
}

/// How a column-major BLAS runs a Gemm: C is written as stored (col-major C) or as C^T = B^T A^T
/// (row-major C, `swap`); each operand is read in place or first packed row-major into scratch.
/// Computed the same way by the workspace query (host code) and by the GPU backend.
struct BlasPlan {
  bool swap = false;                    // compute C^T = B^T A^T
  bool pack_a = false, pack_b = false;  // of the operands as the BLAS sees them (after swap)
  bool pack_c = false;
  std::int64_t a_elems = 0, b_elems = 0, c_elems = 0;  // scratch elements of each pack
};
template <class TA, class TB, class TC, class E>
BlasPlan blas_plan(const Gemm<TA, TB, TC, E>& g) {
  BlasPlan p;
  const BlasLayout lc = blas_layout(g.m, g.n, g.c.row, g.c.col);
  p.pack_c = !lc.ok;
  p.swap = lc.ok ? lc.trans : true;  // a packed C is row-major
  // After a swap the BLAS's A is B^T (n x k) and its B is A^T (k x m).
  const std::int64_t rows_a = p.swap ? g.n : g.m, rows_b = g.k, cols_b = p.swap ? g.m : g.n;
  const auto& oa = p.swap ? g.b : g.a;  // memory of the BLAS's first operand (transposed when swapped)
  const auto& ob = p.swap ? g.a : g.b;
  const BlasLayout la = p.swap ? blas_layout(rows_a, g.k, oa.col, oa.row) : blas_layout(rows_a, g.k, oa.row, oa.col);
  const BlasLayout lb = p.swap ? blas_layout(rows_b, cols_b, ob.col, ob.row) : blas_layout(rows_b, cols_b, ob.row, ob.col);
  p.pack_a = !la.ok;
  p.pack_b = !lb.ok;
  const std::int64_t used = g.batch;  // batches of each operand that are read
  if (p.pack_a) p.a_elems = (oa.batch == 0 ? 1 : used) * rows_a * g.k;
  if (p.pack_b) p.b_elems = (ob.batch == 0 ? 1 : used) * rows_b * cols_b;
  if (p.pack_c) p.c_elems = g.outputs() * g.m * g.n;
  return p;
}

} } }  // namespace kdloss::expr
