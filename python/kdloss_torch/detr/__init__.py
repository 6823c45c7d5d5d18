"""kdloss_torch.detr: the DETR family (issue 11): scipy-exact batched Hungarian assignment, box ops,
matchers and the DETRDistill losses. Each part lives in its own private module."""

from ._assignment import linear_sum_assignment, linear_sum_assignment_padded  # noqa: F401
