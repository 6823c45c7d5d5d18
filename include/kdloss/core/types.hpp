// kdloss/core/types.hpp: reductions and small shared enums.
#pragma once
#include <string>

#include "kdloss/config.hpp"

namespace kdloss {  // Reduction is a vocabulary type: outside the ABI namespace (core/error.hpp)

/// How a per-element loss becomes its output, as PyTorch names it.
/// batchmean (sum / size of dim 0) exists for the KL divergence only.
/// A default-constructed Reduction (`{}`) is mean, PyTorch's default: `none` must be asked for by name.
enum class Reduction { mean, sum, none, batchmean };

inline const char* to_string(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
    case Reduction::batchmean: return "batchmean";
  }
  return "?";
}

}  // namespace kdloss
