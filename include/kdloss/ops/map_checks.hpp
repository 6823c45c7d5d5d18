// kdloss/ops/map_checks.hpp: the checks that the ops reading a feature map x [B, C, H, W] and writing a
// pooled map y (ops::max_pool2d, ops::roi_align) share: the input map itself, and the y / grad_y / grad_x
// views of each mode (presence, null, shape, device, unique outputs, no aliasing). Each op adds its own
// options' and extra inputs' checks on top.
#pragma once
#include "kdloss/config.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/validate.hpp"
#include "kdloss/core/view.hpp"

namespace kdloss { inline namespace KDLOSS_ABI_NAMESPACE { namespace ops::detail {

/// x: present, rank 4 ([B, C, H, W]) and not null. `absent_note` ends the message of an absent x.
template <class T>
void check_feature_map(const kdloss::detail::Checker& ck, const View<const T>& x, const char* absent_note = "") {
  kdloss::detail::require(present(x), ck.fn, ": argument 'x' is absent; every mode reads it", absent_note);
  ck.rank(x, "x", 4);
  ck.not_null(x, "x");
}

/// The outputs of a map op in `mode`: y (shape `out`, forward modes), grad_y (shape `out`, read by the
/// gradient modes) and grad_x (x's shape, written by the gradient modes), all on x's device, y and grad_x
/// unique, none of them overlapping x, each other, or `also` (an extra input named `also_name`; none
/// when also_name is null).
template <class T>
void check_map_outputs(const kdloss::detail::Checker& ck, Mode mode, const View<const T>& x, const Dims& out,
                       const View<T>& y, const View<const T>& grad_y, const View<T>& grad_x,
                       const View<const T>& also = {}, const char* also_name = nullptr) {
  const auto view = [&](const auto& v, const char* name, const Dims& shape, const char* role) {
    kdloss::detail::require(present(v), ck.fn, ": argument '", name, "' is absent but ", to_string(mode), " ", role,
                            " it");
    ck.not_null(v, name);
    ck.shape(v, name, shape);
    ck.device(v, name, x.device);
  };
  if (writes_value(mode)) {
    view(y, "y", out, "writes");
    ck.unique(y, "y");
    ck.disjoint(y, "y", x, "x");
    if (also_name) ck.disjoint(y, "y", also, also_name);
  }
  if (writes_gradients(mode)) {
    view(grad_y, "grad_y", out, "reads");
    view(grad_x, "grad_x", x.shape, "writes");
    ck.unique(grad_x, "grad_x");
    ck.disjoint(grad_x, "grad_x", x, "x");
    ck.disjoint(grad_x, "grad_x", grad_y, "grad_y");
    if (also_name) ck.disjoint(grad_x, "grad_x", also, also_name);
    if (writes_value(mode)) {
      ck.disjoint(grad_x, "grad_x", y, "y");
      ck.disjoint(y, "y", grad_y, "grad_y");
    }
  }
}

} } }  // namespace kdloss::ops::detail
