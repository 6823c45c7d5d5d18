// kdloss/kdloss.hpp: the umbrella header. Include it from .cpp files for the host backend, or
// from .cu files compiled by nvcc for both backends.
#pragma once

#include "kdloss/config.hpp"
#include "kdloss/core/device.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/error.hpp"
#include "kdloss/core/ragged.hpp"
#include "kdloss/core/types.hpp"
#include "kdloss/core/view.hpp"
#include "kdloss/core/workspace.hpp"
#include "kdloss/losses/feature/feature.hpp"
#include "kdloss/losses/fbkd/fbkd.hpp"
#include "kdloss/losses/ssim/ssim.hpp"
#include "kdloss/ops/batch_norm.hpp"
#include "kdloss/ops/concat_relation.hpp"
#include "kdloss/ops/dot_relation.hpp"
#include "kdloss/ops/filter.hpp"
#include "kdloss/ops/linear.hpp"
#include "kdloss/ops/matmul.hpp"
#include "kdloss/ops/max_pool.hpp"
#include "kdloss/ops/pooling.hpp"
#include "kdloss/ops/softmax.hpp"
