// kdloss/core/error.hpp: the one error type of the C++ API.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "kdloss/config.hpp"

// Error and the vocabulary types (View, Dims, Device, Stream, Workspace, BlasHandle, Exec) stay outside the
// ABI namespace (config.hpp): a .cpp file can hand them to a .cu file and catch its errors.
namespace kdloss {

/// Thrown by every entry point on bad input, before any output is written.
/// The message names the function, the argument, and the expected and actual values.
///
///   try { kdloss::mse_loss(s, t, out); }
///   catch (const kdloss::Error& e) { std::cerr << e.what(); }
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace error_detail {  // the checks of the untagged types; the rest of kdloss calls them as detail::

template <class... Parts>
[[noreturn]] inline void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

template <class... Parts>
inline void require(bool ok, const Parts&... parts) {
  if (!ok) fail(parts...);
}

}  // namespace error_detail

inline namespace KDLOSS_ABI_NAMESPACE {
namespace detail {
using error_detail::fail;
using error_detail::require;
}  // namespace detail
}  // namespace KDLOSS_ABI_NAMESPACE
}  // namespace kdloss
