// kdloss/losses/detr/detr.hpp: the DETR family (DETRDistill, seed 004), namespace kdloss::detr.
// DETRDistill's target-aware feature distillation (feature_distillation.hpp) and the code's contrastive
// query term (contrastive.hpp); the element losses, matching costs, logits and query-prior distillation
// join it (v5-boxes, v5-detrdistill).
#pragma once
#include "kdloss/losses/detr/contrastive.hpp"
#include "kdloss/losses/detr/feature_distillation.hpp"
