"""kdloss_torch.detr: the DETR family (issue 11): scipy-exact batched Hungarian assignment, box ops,
matchers and the DETRDistill losses. Each part lives in its own private module."""

from ._distill import (ContrastiveQueryLoss, TargetAwareFeatureLoss, contrastive_query_loss,  # noqa: F401
                       target_aware_feature_loss)
