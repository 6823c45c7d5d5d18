"""PyTorch autograd re-implementations of the reference code (../shared/reference/losses.md).

These are what users run today: torch.nn.functional losses, and the FBKD attention-guided terms as
the official FBKD code (two_stage.py / single_stage.py) and its mmrazor port compute them
(mmrazor/models/losses/fbkd_loss.py, mmrazor/models/architectures/connectors/fbkd_connector.py):

- masks: the mean of two softmaxes, M_s = HW * softmax(mean_c|x| / t) per image ([N,1,H,W]) and
  M_c = C * softmax(mean_hw|x| / t_c) ([N,C,1,1]), averaged over teacher and student, detached;
- L_AM: `mask_l2_loss` / `dist2` = sum((T - A)^2 * M_s [* M_c]) ** 0.5 (no eps), channel mask off in
  the two-stage code and mmrazor, on in the one-stage code;
- L_AT (code): torch.dist(mean_hw(T), C_hat) + torch.dist(mean_c(T) [N,1,H,W], S_hat);
- weights 7e-5 (L_AM) and 4e-3 (L_AT terms), summed over levels.

The paper form (one softmax of the summed maps; L_AT = ||G_s(S) - G_s(T)|| + ||G_c(S) - G_c(T)|| on the
abs-mean maps) is written the same way. Used by the parity tests and by bench/compare_torch.py.
"""

import torch
import torch.nn.functional as F


# ---- feature losses: what F.* computes ------------------------------------------------------------

def mse_loss(student, teacher, reduction="mean"):
    return F.mse_loss(student, teacher, reduction=reduction)


def l1_loss(student, teacher, reduction="mean"):
    return F.l1_loss(student, teacher, reduction=reduction)


def smooth_l1_loss(student, teacher, beta=1.0, reduction="mean"):
    return F.smooth_l1_loss(student, teacher, reduction=reduction, beta=beta)


def distance_loss(student, teacher):
    return torch.dist(student, teacher)


def kl_div_loss(student_logits, teacher_logits, class_axis, temperature=1.0, reduction="batchmean"):
    """Hinton's KD loss as detection KD code writes it: KL(softmax(t/T) || softmax(s/T)) * T^2."""
    T = temperature
    return F.kl_div(F.log_softmax(student_logits / T, dim=class_axis), F.softmax(teacher_logits / T, dim=class_axis),
                    reduction=reduction) * T * T


# ---- FBKD (official code / mmrazor) ---------------------------------------------------------------

def spatial_attention(x):
    """G_s: mean over channels of |x|, [N,1,H,W]."""
    return torch.mean(torch.abs(x), [1], keepdim=True)


def channel_attention(x):
    """G_c: mean over positions of |x|, [N,C,1,1]."""
    return torch.mean(torch.abs(x), [2, 3], keepdim=True)


def _spatial_softmax(g, t):
    size = g.size()
    g = g.view(size[0], -1)
    return (torch.softmax(g / t, dim=1) * size[-1] * size[-2]).view(size)


def _channel_softmax(g, t):
    size = g.size()
    g = g.view(size[0], -1)
    return (torch.softmax(g / t, dim=1) * size[1]).view(size)


def code_masks(student, teacher, spatial_t=0.5, channel_t=0.5):
    """(M_s [N,1,H,W], M_c [N,C,1,1]): (t_mask + s_mask * s_ratio) / (1 + s_ratio), s_ratio = 1, detached.
    (The official code multiplies the channel softmax by a hard-coded 256 = C.)"""
    ms = (_spatial_softmax(spatial_attention(teacher), spatial_t) +
          _spatial_softmax(spatial_attention(student), spatial_t)) / 2
    mc = (_channel_softmax(channel_attention(teacher), channel_t) +
          _channel_softmax(channel_attention(student), channel_t)) / 2
    return ms.detach(), mc.detach()


def paper_masks(student, teacher, spatial_t=0.1, channel_t=0.1):
    """Paper: one softmax of the summed maps, M = HW * softmax((G(S) + G(T)) / t), detached."""
    ms = _spatial_softmax(spatial_attention(student) + spatial_attention(teacher), spatial_t)
    mc = _channel_softmax(channel_attention(student) + channel_attention(teacher), channel_t)
    return ms.detach(), mc.detach()


def mask_l2_loss(tensor_a, tensor_b, spatial_mask=None, channel_mask=None):
    """mmrazor mask_l2_loss / official dist2: sum((a - b)^2 * masks) ** 0.5 (no eps)."""
    diff = (tensor_a - tensor_b) ** 2
    if spatial_mask is not None:
        diff = diff * spatial_mask
    if channel_mask is not None:
        diff = diff * channel_mask
    return torch.sum(diff) ** 0.5


def code_attention_transfer(student_channel, student_spatial, teacher):
    """Official / mmrazor channel and spatial terms (unweighted): torch.dist(mean_hw(T), C_hat) +
    torch.dist(mean_c(T), S_hat). C_hat = Linear(mean_hw(S)) [N,C], S_hat = Conv3x3(mean_c(S)) [N,1,H,W]."""
    n, _, h, w = teacher.shape
    channel = torch.dist(torch.mean(teacher, [2, 3]), student_channel.reshape(n, -1))
    t_spatial_pool = torch.mean(teacher, [1]).view(n, 1, h, w)
    spatial = torch.dist(t_spatial_pool, student_spatial.reshape(n, 1, h, w))
    return channel + spatial


def paper_attention_transfer(student, teacher):
    """Paper eq. (1): ||G_s(S) - G_s(T)||_F + ||G_c(S) - G_c(T)||_F."""
    return (torch.dist(spatial_attention(student), spatial_attention(teacher)) +
            torch.dist(channel_attention(student), channel_attention(teacher)))


def fbkd_total(levels, config):
    """Sum over levels of w_am * L_AM + w_at * L_AT. `levels`: (S, T, A, C_hat, S_hat) per level
    (A None: S itself); `config`: an object with the fields of kdloss_torch.fbkd.Config."""
    total = 0.0
    for s, t, a, c, sp in levels:
        masks = code_masks if config.mask_form == "code" else paper_masks
        ms, mc = masks(s, t, config.spatial_temperature, config.channel_temperature)
        if config.w_am != 0:
            adapted = s if a is None else a
            total = total + config.w_am * mask_l2_loss(t, adapted, ms, mc if config.use_channel_mask else None)
        if config.w_at != 0:
            if config.transfer_form == "code":
                total = total + config.w_at * code_attention_transfer(c, sp, t)
            else:
                total = total + config.w_at * paper_attention_transfer(s, t)
    return total


def mmrazor_fbkd_loss(s_feat_adapt, s_channel_pool_adapt, s_spatial_pool_adapt, s_spatial_mask, t_spatial_mask,
                      t_feat, mask_l2_weight=7e-5, channel_weight=4e-3, spatial_weight=4e-3):
    """mmrazor FBKDLoss.forward without the non-local term, in its own variable names (one level)."""
    spatial_sum_mask = ((t_spatial_mask + s_spatial_mask) / 2).detach()
    losses = mask_l2_loss(t_feat, s_feat_adapt, spatial_sum_mask) * mask_l2_weight
    losses = losses + torch.dist(torch.mean(t_feat, [2, 3]), s_channel_pool_adapt) * channel_weight
    n, _, h, w = t_feat.shape
    t_spatial_pool = torch.mean(t_feat, [1]).view(n, 1, h, w)
    losses = losses + torch.dist(t_spatial_pool, s_spatial_pool_adapt) * spatial_weight
    return losses
