// A fixture for the layering test: a backend header that names a loss. The checker must reject it.
#pragma once
#include "kdloss/losses/a/head.hpp"
