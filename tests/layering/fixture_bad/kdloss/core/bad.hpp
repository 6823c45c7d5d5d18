// A fixture for the layering test: core including an op and naming a framework.
#pragma once
#include "kdloss/ops/softmax.hpp"
#include <torch/extension.h>
