// kdloss/config.hpp: compiler and platform switches shared by every header.
#pragma once

#define KDLOSS_VERSION_MAJOR 0
#define KDLOSS_VERSION_MINOR 1
#define KDLOSS_VERSION_PATCH 0

// One overridable host/device marker, so the same scalar code builds with g++ and nvcc.
#ifndef KDLOSS_HOST_DEVICE
#if defined(__CUDACC__)
#define KDLOSS_HOST_DEVICE __host__ __device__
#else
#define KDLOSS_HOST_DEVICE
#endif
#endif

#ifndef KDLOSS_FORCEINLINE
#if defined(__CUDACC__)
#define KDLOSS_FORCEINLINE __forceinline__
#elif defined(__GNUC__)
#define KDLOSS_FORCEINLINE inline __attribute__((always_inline))
#else
#define KDLOSS_FORCEINLINE inline
#endif
#endif

// Keeps a rare branch out of a hot function's inlined body (host and device).
#ifndef KDLOSS_NOINLINE
#if defined(__CUDACC__)
#define KDLOSS_NOINLINE __noinline__
#elif defined(__GNUC__) || defined(__clang__)
#define KDLOSS_NOINLINE __attribute__((noinline))
#else
#define KDLOSS_NOINLINE
#endif
#endif

// The CUDA backend exists only in translation units compiled by nvcc: a .cpp file
// sees the host backend alone and gets a clear error if it hands over device views.
#if defined(__CUDACC__) && !defined(KDLOSS_DISABLE_CUDA)
#define KDLOSS_CUDA_ENABLED 1
#else
#define KDLOSS_CUDA_ENABLED 0
#endif

// A .cu file that makes GPU calls only can leave the host backend out: with KDLOSS_DISABLE_HOST_BACKEND
// defined before the first kdloss include, nvcc no longer compiles the CPU evaluation of every entry point
// the file calls (dispatch is decided at run time), and a call on host views there fails with a clear
// error. The GPU halves of the tests, the demo's GPU build and the CUDA benchmarks build this way; the
// PyTorch bridge does not (its CPU tensors need the host backend). docs/conventions.md gives the numbers.
#if defined(KDLOSS_DISABLE_HOST_BACKEND)
#if !KDLOSS_CUDA_ENABLED
#error "KDLOSS_DISABLE_HOST_BACKEND: only a translation unit that nvcc compiles with the CUDA backend can leave out the host backend"
#endif
#define KDLOSS_HOST_BACKEND_ENABLED 0
#else
#define KDLOSS_HOST_BACKEND_ENABLED 1
#endif

// Every kdloss name lives in an inline namespace named after the backends its translation unit
// compiles. The headers define different function bodies under g++ and nvcc (a .cpp file has no GPU
// backend), so without the tag a program that mixes .cpp and .cu files holds two definitions of, say,
// kdloss::mse_loss<float> under one symbol, and the linker keeps either: a .cu file's GPU call could
// run the host-only one and fail. With it each kind of translation unit links its own definitions
// (CUB tags its namespace the same way, for the same reason). The vocabulary types (View, Dims, Device,
// Stream, Workspace, BlasHandle, Exec, Error, Reduction) stay outside it and cross that boundary; argument
// and option structs are tagged: fill them in the translation unit that makes the call.
#ifndef KDLOSS_ABI_NAMESPACE
#if KDLOSS_CUDA_ENABLED && !KDLOSS_HOST_BACKEND_ENABLED
#define KDLOSS_ABI_NAMESPACE abi_v0_cuda_only
#elif KDLOSS_CUDA_ENABLED
#define KDLOSS_ABI_NAMESPACE abi_v0_cuda
#elif defined(__CUDACC__)
#define KDLOSS_ABI_NAMESPACE abi_v0_nvcc_host
#else
#define KDLOSS_ABI_NAMESPACE abi_v0_host
#endif
#endif

// Host loops use OpenMP when the consumer compiles with it (kdloss::kdloss links it when found).
#if defined(_OPENMP)
#define KDLOSS_OPENMP 1
#else
#define KDLOSS_OPENMP 0
#endif

namespace kdloss {
/// Largest rank a view can have: enough for [B, C, D, H, W] plus one.
inline constexpr int kMaxRank = 6;
}  // namespace kdloss
