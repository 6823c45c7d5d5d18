// kdloss/losses/detr/detr.hpp: the DETR family (namespace kdloss::detr): element losses over the pairs
// of an assignment, matching costs, and the DETRDistill losses built on them. See docs/losses/detr.md
// and docs/losses/detrdistill.md.
#pragma once

#include "kdloss/losses/detr/contrastive.hpp"
#include "kdloss/losses/detr/feature_distillation.hpp"
#include "kdloss/losses/detr/logits_distillation.hpp"
#include "kdloss/losses/detr/matched_losses.hpp"
#include "kdloss/losses/detr/matching_cost.hpp"
#include "kdloss/losses/detr/query_prior.hpp"
