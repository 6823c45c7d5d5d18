// A fixture for the layering test: a loss family that includes another family and branches on the device.
#pragma once
#include "kdloss/losses/b/other.hpp"
inline void f(bool host) { if (dev.is_host()) {} }
