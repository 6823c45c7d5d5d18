"""kdloss_torch.detr: the DETR family (issue 11): scipy-exact batched Hungarian assignment, box ops,
matchers and the DETRDistill losses. Each part lives in its own private module."""

from ._assignment import linear_sum_assignment, linear_sum_assignment_padded  # noqa: F401
from ._boxes import (box_convert, box_iou, generalized_box_iou, generalized_box_iou_loss,  # noqa: F401
                     matched_box_loss, matched_class_loss, matching_cost, sigmoid_focal_loss)
from ._distill import (ContrastiveQueryLoss, LogitsDistillationLoss, QueryPriorLoss,  # noqa: F401
                       TargetAwareFeatureLoss, contrastive_query_loss, logits_distillation_loss, query_prior_loss,
                       target_aware_feature_loss)
from ._matcher import HungarianMatcher  # noqa: F401
