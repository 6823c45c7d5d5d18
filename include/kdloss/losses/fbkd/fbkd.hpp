// kdloss/losses/fbkd/fbkd.hpp: the FBKD family (Zhang & Ma, ICLR 2021, "Improve Object Detection with
// Feature-based Knowledge Distillation"): attention maps and masks, the masked feature loss L_AM,
// the attention-transfer loss L_AT (paper and reference-code forms) and their weighted total over
// pyramid levels, each with forward and analytic backward. See docs/losses/fbkd.md.
//
//   #include "kdloss/losses/fbkd/fbkd.hpp"
//   auto cfg = kdloss::fbkd::Config::code_two_stage();
//   kdloss::fbkd::total_loss_forward_backward(levels, kdloss::host_scalar(&value), cfg);
#pragma once

#include "kdloss/losses/fbkd/attention_transfer.hpp"
#include "kdloss/losses/fbkd/masked_feature.hpp"
#include "kdloss/losses/fbkd/masks.hpp"
#include "kdloss/losses/fbkd/options.hpp"
#include "kdloss/losses/fbkd/total.hpp"
#include "kdloss/ops/pooling.hpp"
