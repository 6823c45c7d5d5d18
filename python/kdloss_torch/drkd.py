"""DRKD losses (kdloss/losses/drkd): the seed's pixel-wise relation loss.

    import kdloss_torch.drkd as drkd
    loss = drkd.pixel_relation_loss(student, teacher)        # [B, C, H, W] each, any strides

G(F) = softmax(F F^T / sqrt(C)) F per image (F = the map read as [H*W, C]) and the loss is
mean((G(T) - G(S))^2), as torch.nn.functional.mse_loss(sdpa(T, T, T), sdpa(S, S, S)) with
sdpa = scaled_dot_product_attention on [B, H*W, C], but without the [H*W, H*W] matrix: it runs at P2.
The student gets the gradient through the whole relation; the teacher gets none.
"""

from . import _C, _function

__all__ = ["pixel_relation_loss", "PixelRelationOptions"]

PixelRelationOptions = _C.PixelRelationOptions

_pixel_relation = _function.Loss(_C.drkd_pixel_relation_loss, name="drkd.pixel_relation_loss")


def pixel_relation_loss(student, teacher, scale=0.0):
    """kdloss::drkd::pixel_relation_loss: mean((G(T) - G(S))^2); scale 0 means 1/sqrt(C)."""
    return _pixel_relation(student, teacher, options=PixelRelationOptions(scale=float(scale)))
