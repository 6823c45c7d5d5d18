// kdloss/losses/fbkd/fbkd.hpp: the FBKD family (Zhang & Ma, ICLR 2021, "Improve Object Detection with
// Feature-based Knowledge Distillation"): attention maps and masks, the masked feature loss L_AM,
// the attention-transfer loss L_AT (paper and reference-code forms), the non-local term L_NLD of one
// level (non_local_loss.hpp) and the weighted total of L_AM and L_AT over
// pyramid levels, each with forward and analytic backward. See docs/losses/fbkd.md.
//
// Every entry point E has the shape of core/entry.hpp: EArgs, E_check(args, mode),
// E_workspace_bytes(args) and E(args, mode, exec), with thin wrappers E(...), E_backward(...) and
// E_forward_backward(...):
//
//   #include "kdloss/losses/fbkd/fbkd.hpp"
//   const kdloss::Dims shape{2, 8, 6, 5};
//   std::vector<float> s(shape.product(), 0.5f), t(shape.product(), 0.25f), gs(shape.product());
//   kdloss::fbkd::TotalLossArgs<float> args;
//   kdloss::fbkd::Level<float> level{kdloss::host_view<const float>(s.data(), shape),
//                                    kdloss::host_view<const float>(t.data(), shape)};
//   level.grad_student = kdloss::host_view(gs.data(), shape);
//   args.levels = {level};
//   float value;
//   args.out = kdloss::host_scalar(&value);
//   args.options = kdloss::fbkd::Config::paper_two_stage();
//   kdloss::fbkd::total_loss(args, kdloss::Mode::forward_backward);
#pragma once

#include "kdloss/losses/fbkd/attention_transfer.hpp"
#include "kdloss/losses/fbkd/masked_feature.hpp"
#include "kdloss/losses/fbkd/masks.hpp"
#include "kdloss/losses/fbkd/options.hpp"
#include "kdloss/losses/fbkd/non_local_loss.hpp"
#include "kdloss/losses/fbkd/total.hpp"
#include "kdloss/ops/pooling.hpp"
