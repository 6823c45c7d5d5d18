"""Learnable blocks whose forward and backward run in kdloss (kdloss/ops/non_local.hpp, ops/glore.hpp), as
nn.Modules with the reference code's parameter names, so an existing state_dict loads as it is:

    import kdloss_torch.blocks as kb
    nl = kb.NonLocal2d(256, reduction=2, mode="dot_product", sub_sample=True, norm_cfg=dict(type="BN"))
    nl.load_state_dict(mmcv_block.state_dict())          # mmcv.cnn.NonLocal2d's keys
    z = nl(x)                                             # x + BN(W y), without the N x N' matrix

- NonLocal2d: mmcv.cnn.NonLocal2d (all four modes, sub_sample, use_scale, reduction, norm_cfg None or BN),
  keys g[.0].conv.*, theta.conv.*, phi[.0].conv.*, concat_project.conv.weight, conv_out.conv.*, conv_out.bn.*.
- NonLocal2dMaxpoolNstride: mmrazor's FBKD connector block (pools by 2 * maxpool_stride; keys g.0.0.conv.*).
  mmrazor's gaussian mode pools g and phi to different grids and raises on every input; here both are
  pooled by 2 * maxpool_stride (the consistent form).
- NonLocalBlockND: the official FBKD code's block (dot product, W = conv + BN initialised to 0, g and phi
  sub-sampled by a max pool of downsample_stride), keys g.0.*, theta.*, phi.0.*, W.0.*, W.1.*.
- GloRe (alias GloRe_Unit_2D): the DRKD code's unit, keys conv_state.*, conv_proj.*, gcn.conv1.*,
  gcn.conv2.weight, conv_extend.weight, blocker.*.

Every parameter gets its gradient from kdloss's analytic backward. The BN layers are torch's BatchNorm2d
modules (their parameters and buffers): in training mode the block normalises with the batch statistics
and updates running_mean / running_var (unbiased variance) / num_batches_tracked as torch does (momentum,
or the cumulative average when momentum is None); in eval mode it uses the running statistics (BN as an
affine map, gradients included). The functions non_local() and glore() take the tensors directly.
"""

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import _C
from ._common import BACKWARD, FORWARD

__all__ = ["NonLocal2d", "NonLocal2dMaxpoolNstride", "NonLocalBlockND", "GloRe", "GloRe_Unit_2D", "non_local",
           "glore", "NonLocalOptions", "GloreOptions"]

NonLocalOptions = _C.NonLocalOptions
GloreOptions = _C.GloreOptions

_MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")


class _Block(torch.autograd.Function):
    """A block entry as a Function: forward keeps the reserve when a gradient is wanted; backward runs the
    entry's backward with grad_output and returns the gradients of the inputs that require grad (matched by
    name). `stats`: a list that receives the BN batch mean and unbiased variance, or None."""

    @staticmethod
    def forward(ctx, entry, options, stats, *tensors):
        need = ctx.needs_input_grad[3:]
        pairs = [(g, 3 + entry.inputs.index(x)) for g, x in zip(entry.grads, entry.grad_of)
                 if need[entry.inputs.index(x)]]
        want = ["bn_batch_mean", "bn_batch_var"] if stats is not None else []
        if pairs:
            want.append("reserve")
        result = entry(FORWARD, list(tensors), options, None, want)
        if stats is not None:
            stats += [result["bn_batch_mean"], result["bn_batch_var"]]
        if pairs:
            ctx.call = (entry, options, pairs, 3 + len(tensors))
            ctx.save_for_backward(*tensors, result["reserve"])
        return result[entry.outputs[0]]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        entry, options, pairs, n = ctx.call
        saved = ctx.saved_tensors
        result = entry(BACKWARD, list(saved[:-1]), options, grad_output, [g for g, _ in pairs], saved[-1])
        out = [None] * n
        for g, k in pairs:
            out[k] = result[g]
        return tuple(out)


def _mergeable(x):
    """x as the blocks read it: H and W must merge into one strided axis (contiguous, channels-last, batch or
    channel slices); another layout (a step along W, a transposed H/W) is copied first, through autograd."""
    if x.dim() == 4 and x.size(2) > 1 and x.size(3) > 1 and x.stride(2) != x.stride(3) * x.size(3):
        return x.contiguous()
    return x


def _run(entry, options, tensors, bn=None):
    """The block's value; with a training BN that tracks running statistics, updates them as torch does."""
    tensors = (_mergeable(tensors[0]),) + tuple(tensors[1:])
    stats = [] if bn is not None and bn.training and bn.track_running_stats else None
    out = _Block.apply(entry, options, stats, *tensors)
    if stats:
        _update_running_stats(bn, *stats)
    return out


def _update_running_stats(bn, mean, var):
    """torch.nn.BatchNorm2d's update: running = (1 - f) running + f batch (batch variance unbiased), f =
    momentum, or 1 / num_batches_tracked when momentum is None."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        f = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        bn.running_mean.mul_(1.0 - f).add_(mean.to(bn.running_mean.dtype), alpha=f)
        bn.running_var.mul_(1.0 - f).add_(var.to(bn.running_var.dtype), alpha=f)


def _bn_tensors(bn):
    """(weight, bias, running_mean, running_var, training) of a BatchNorm2d for ops::non_local and ops::glore:
    batch statistics in training mode or without running statistics (torch's rule)."""
    training = bn.training or bn.running_mean is None
    return (bn.weight, bn.bias, None if training else bn.running_mean, None if training else bn.running_var,
            training)


def non_local(x, g_weight, g_bias=None, theta_weight=None, theta_bias=None, phi_weight=None, phi_bias=None,
              concat_project_weight=None, conv_out_weight=None, conv_out_bias=None, bn_weight=None, bn_bias=None,
              bn_running_mean=None, bn_running_var=None, mode="embedded_gaussian", use_scale=True, pool_g=1,
              pool_phi=1, norm=True, training=True, bn_eps=1e-5):
    """kdloss::ops::non_local: z = x + BN(W y), y_i = sum_j f(theta_i, phi_j) g_j (docs/ops/non_local.md).
    Weights as [out, in] or [out, in, 1, 1]; evaluation mode (training=False) reads the running statistics.
    Gradients to x and every parameter given. The running statistics are not updated (the modules do)."""
    options = dict(mode=mode, use_scale=bool(use_scale), pool_g=int(pool_g), pool_phi=int(pool_phi), norm=bool(norm),
                   training=bool(training), bn_eps=float(bn_eps))
    return _run(_C.blocks_non_local, options,
                (x, g_weight, g_bias, theta_weight, theta_bias, phi_weight, phi_bias, concat_project_weight,
                 conv_out_weight, conv_out_bias, bn_weight, bn_bias, bn_running_mean, bn_running_var))


def glore(x, state_weight, state_bias, proj_weight, proj_bias, gcn_conv1_weight, gcn_conv1_bias, gcn_conv2_weight,
          extend_weight, bn_weight, bn_bias, bn_eps=1e-4, bn_running_mean=None, bn_running_var=None, training=True):
    """kdloss::ops::glore: the DRKD GloRe unit out = x + BN(W_e (W_g ReLU(V + V A^T + 1 a^T)) P)
    (docs/ops/glore.md). Weights as the 2-D matrices ([2m, C], [m, m], ...); gradients to x and all ten.
    training=True: BN with the batch statistics; False: with bn_running_mean / bn_running_var (required).
    The running statistics are not updated (the GloRe module does)."""
    return _run(_C.blocks_glore, dict(bn_eps=float(bn_eps), training=bool(training)),
                (x, state_weight, state_bias, proj_weight, proj_bias, gcn_conv1_weight, gcn_conv1_bias,
                 gcn_conv2_weight, extend_weight, bn_weight, bn_bias, bn_running_mean, bn_running_var))


# ---- mmcv NonLocal2d -------------------------------------------------------------------------------------

def _bn_from_cfg(channels, norm_cfg):
    """nn.BatchNorm2d from an mmcv norm_cfg (type BN / BN2d; eps, momentum, requires_grad)."""
    cfg = dict(norm_cfg)
    kind = cfg.pop("type", None)
    if kind not in ("BN", "BN2d"):
        raise ValueError("kdloss_torch.blocks: norm_cfg type %r is not supported (BN or BN2d; SyncBN would need "
                         "cross-process statistics)" % (kind,))
    requires_grad = cfg.pop("requires_grad", True)
    bn = nn.BatchNorm2d(channels, **cfg)
    for p in bn.parameters():
        p.requires_grad = requires_grad
    return bn


class _ConvModule(nn.Module):
    """mmcv ConvModule's parameter names for a 1x1 convolution: `conv` (bias when no norm follows, mmcv's
    bias='auto') and, with a norm_cfg, `bn`."""

    def __init__(self, in_channels, out_channels, bias=None, norm_cfg=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=norm_cfg is None if bias is None else bias)
        if norm_cfg is not None:
            self.bn = _bn_from_cfg(out_channels, norm_cfg)
        self.with_norm = norm_cfg is not None

    def forward(self, x):  # what the reference module computes (act_cfg=None)
        x = self.conv(x)
        return self.bn(x) if self.with_norm else x


def _first(m, kind):
    """The first submodule of type `kind` in m (m itself, or inside nested Sequentials)."""
    while isinstance(m, nn.Sequential):
        m = m[0]
    return m if isinstance(m, kind) else None


class NonLocal2d(nn.Module):
    """mmcv.cnn.NonLocal2d with kdloss's forward and backward (same arguments, same state_dict keys).

    in_channels, reduction (m = max(C // reduction, 1)), use_scale (embedded_gaussian), conv_cfg (Conv2d
    only), norm_cfg (None: conv_out has a bias and no BN; dict(type='BN', ...): conv + BN), mode
    ('embedded_gaussian', 'gaussian', 'dot_product', 'concatenation'), sub_sample (max pool 2 of g and
    phi), std / zeros_init (mmcv's init_weights). The N x N' relation is never stored.
    """

    def __init__(self, in_channels, sub_sample=False, conv_cfg=None, reduction=2, use_scale=True, norm_cfg=None,
                 mode="embedded_gaussian", std=0.01, zeros_init=True):
        super().__init__()
        if mode not in _MODES:
            raise ValueError("Mode should be in 'gaussian', 'concatenation', 'embedded_gaussian' or 'dot_product', "
                             "but got %s instead." % (mode,))
        if conv_cfg is not None and dict(conv_cfg).get("type", "Conv2d") not in ("Conv2d", "Conv"):
            raise ValueError("kdloss_torch.blocks.NonLocal2d: conv_cfg %r is not supported (Conv2d)" % (conv_cfg,))
        self.in_channels = in_channels
        self.reduction = reduction
        self.use_scale = use_scale
        self.inter_channels = max(in_channels // reduction, 1)
        self.mode = mode
        self.sub_sample = sub_sample
        self.pool = 2 if sub_sample else 1
        m = self.inter_channels
        self.g = _ConvModule(in_channels, m)
        self.conv_out = _ConvModule(m, in_channels, norm_cfg=norm_cfg)
        if mode != "gaussian":
            self.theta = _ConvModule(in_channels, m)
            self.phi = _ConvModule(in_channels, m)
        if mode == "concatenation":
            self.concat_project = _ConvModule(2 * m, 1, bias=False)
        self._init(std, zeros_init)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool2d(kernel_size=(2, 2)))
            if mode != "gaussian":
                self.phi = nn.Sequential(self.phi, nn.MaxPool2d(kernel_size=(2, 2)))
            else:
                self.phi = nn.MaxPool2d(kernel_size=(2, 2))

    def _init(self, std, zeros_init):
        """mmcv's initialisation: ConvModule's kaiming (fan_out, relu) and BN (1, 0), then normal(std) for
        g, theta, phi and 0 (or normal(std)) for conv_out's BN, or its conv without a BN."""
        for mod in self.modules():
            if isinstance(mod, _ConvModule):
                nn.init.kaiming_normal_(mod.conv.weight, mode="fan_out", nonlinearity="relu")
                if mod.conv.bias is not None:
                    nn.init.zeros_(mod.conv.bias)
                if mod.with_norm:
                    nn.init.ones_(mod.bn.weight)
                    nn.init.zeros_(mod.bn.bias)
        for mod in [self.g] + ([self.theta, self.phi] if self.mode != "gaussian" else []):
            nn.init.normal_(mod.conv.weight, 0.0, std)
            nn.init.zeros_(mod.conv.bias)
        last = self.conv_out.bn if self.conv_out.with_norm else self.conv_out.conv
        if zeros_init:
            nn.init.zeros_(last.weight)
        else:
            nn.init.normal_(last.weight, 0.0, std)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def _conv(self, name):
        mod = _first(getattr(self, name, None), _ConvModule)
        return (mod.conv.weight, mod.conv.bias) if mod is not None else (None, None)

    def forward(self, x):
        g_w, g_b = self._conv("g")
        t_w, t_b = self._conv("theta")
        p_w, p_b = self._conv("phi")
        cp = self.concat_project.conv.weight if self.mode == "concatenation" else None
        out = self.conv_out
        bn = out.bn if out.with_norm else None
        bn_w, bn_b, rm, rv, training = _bn_tensors(bn) if bn is not None else (None, None, None, None, True)
        options = dict(mode=self.mode, use_scale=bool(self.use_scale), pool_g=self.pool, pool_phi=self.pool,
                       norm=bn is not None, training=training, bn_eps=float(bn.eps) if bn is not None else 1e-5)
        return _run(_C.blocks_non_local, options,
                    (x, g_w, g_b, t_w, t_b, p_w, p_b, cp, out.conv.weight, out.conv.bias, bn_w, bn_b, rm, rv), bn)

    def extra_repr(self):
        return "mode=%s, in_channels=%d, inter_channels=%d, pool=%d" % (self.mode, self.in_channels,
                                                                       self.inter_channels, self.pool)


class NonLocal2dMaxpoolNstride(NonLocal2d):
    """mmrazor's NonLocal2dMaxpoolNstride (FBKD connectors): NonLocal2d with norm_cfg BN by default and, with
    sub_sample, a second MaxPool2d(maxpool_stride) around g and phi (state_dict keys g.0.0.conv.*), so g and
    phi are pooled by 2 * maxpool_stride. In gaussian mode mmrazor pools g and phi to different grids and
    raises on every input; here both are pooled by 2 * maxpool_stride."""

    def __init__(self, in_channels, reduction=2, conv_cfg=None, norm_cfg=dict(type="BN"), mode="embedded_gaussian",
                 sub_sample=False, maxpool_stride=2, zeros_init=True, **kwargs):
        super().__init__(in_channels, sub_sample=sub_sample, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                         reduction=reduction, mode=mode, zeros_init=zeros_init, **kwargs)
        self.norm_cfg = norm_cfg
        if sub_sample:
            self.pool = 2 * maxpool_stride
            pool = nn.MaxPool2d(kernel_size=(maxpool_stride, maxpool_stride))
            self.g = nn.Sequential(self.g, pool)
            self.phi = nn.Sequential(self.phi, pool) if self.mode != "gaussian" else pool


# ---- the official FBKD NonLocalBlockND --------------------------------------------------------------------

class NonLocalBlockND(nn.Module):
    """The official FBKD code's NonLocalBlockND (dimension 2, dot product): g, theta, phi = Conv2d(C, m, 1),
    W = Sequential(Conv2d(m, C, 1), BatchNorm2d(C)) with the BN initialised to 0 (bn_layer; else W is the
    convolution, initialised to 0), g and phi followed by MaxPool2d(downsample_stride) when sub_sample.
    m = inter_channels (default C // 2, at least 1). The FBKD levels: (64, 8), (64, 4), (128, 2) x 3."""

    def __init__(self, in_channels, inter_channels=None, dimension=2, sub_sample=True, bn_layer=True,
                 downsample_stride=2):
        super().__init__()
        if dimension != 2:
            raise ValueError("kdloss_torch.blocks.NonLocalBlockND: dimension %r is not supported (2)" % (dimension,))
        self.dimension = dimension
        self.sub_sample = sub_sample
        self.in_channels = in_channels
        self.inter_channels = inter_channels if inter_channels is not None else max(in_channels // 2, 1)
        self.pool = downsample_stride if sub_sample else 1
        m = self.inter_channels
        self.g = nn.Conv2d(in_channels, m, 1)
        if bn_layer:
            self.W = nn.Sequential(nn.Conv2d(m, in_channels, 1), nn.BatchNorm2d(in_channels))
            nn.init.constant_(self.W[1].weight, 0)
            nn.init.constant_(self.W[1].bias, 0)
        else:
            self.W = nn.Conv2d(m, in_channels, 1)
            nn.init.constant_(self.W.weight, 0)
            nn.init.constant_(self.W.bias, 0)
        self.theta = nn.Conv2d(in_channels, m, 1)
        self.phi = nn.Conv2d(in_channels, m, 1)
        if sub_sample:
            pool = nn.MaxPool2d(kernel_size=(downsample_stride, downsample_stride))
            self.g = nn.Sequential(self.g, pool)
            self.phi = nn.Sequential(self.phi, pool)

    def forward(self, x):
        g = _first(self.g, nn.Conv2d)
        phi = _first(self.phi, nn.Conv2d)
        conv = _first(self.W, nn.Conv2d)
        bn = self.W[1] if isinstance(self.W, nn.Sequential) else None
        bn_w, bn_b, rm, rv, training = _bn_tensors(bn) if bn is not None else (None, None, None, None, True)
        options = dict(mode="dot_product", pool_g=self.pool, pool_phi=self.pool, norm=bn is not None,
                       training=training, bn_eps=float(bn.eps) if bn is not None else 1e-5)
        return _run(_C.blocks_non_local, options,
                    (x, g.weight, g.bias, self.theta.weight, self.theta.bias, phi.weight, phi.bias, None, conv.weight,
                     conv.bias, bn_w, bn_b, rm, rv), bn)


# ---- the DRKD GloRe unit ------------------------------------------------------------------------------

class _GCN(nn.Module):
    """The DRKD code's GCN parameters: conv1 = Conv1d(m, m, 1) (bias), conv2 = Conv1d(2m, 2m, 1) (no bias)."""

    def __init__(self, num_state, num_node, bias=False):
        super().__init__()
        self.conv1 = nn.Conv1d(num_node, num_node, kernel_size=1)
        self.conv2 = nn.Conv1d(num_state, num_state, kernel_size=1, bias=bias)


class GloRe(nn.Module):
    """The DRKD code's GloRe_Unit_2D(num_in, num_mid) (normalize=False): conv_state (1x1, 2m), conv_proj (1x1,
    m), gcn.conv1, gcn.conv2, conv_extend (1x1, no bias), blocker = BatchNorm2d(num_in, eps=1e-4) (gamma 1,
    beta 0, as the code leaves it). In training mode the blocker normalises with the batch statistics and
    updates its running statistics as torch does; in eval mode it uses them (BN as an affine map)."""

    def __init__(self, num_in, num_mid, normalize=False):
        super().__init__()
        if normalize:
            raise ValueError("kdloss_torch.blocks.GloRe: normalize=True is not supported (the DRKD code uses False)")
        self.normalize = normalize
        self.num_s = int(2 * num_mid)
        self.num_n = int(num_mid)
        self.conv_state = nn.Conv2d(num_in, self.num_s, kernel_size=1)
        self.conv_proj = nn.Conv2d(num_in, self.num_n, kernel_size=1)
        self.gcn = _GCN(num_state=self.num_s, num_node=self.num_n)
        self.conv_extend = nn.Conv2d(self.num_s, num_in, kernel_size=1, bias=False)
        self.blocker = nn.BatchNorm2d(num_in, eps=1e-04)

    def forward(self, x):
        bn = self.blocker
        bn_w, bn_b, rm, rv, training = _bn_tensors(bn)
        s, n = self.num_s, self.num_n
        c = self.conv_extend.weight.shape[0]
        w = self.conv_state.weight.shape[1]
        return _run(_C.blocks_glore, dict(bn_eps=float(bn.eps), training=training),
                    (x, self.conv_state.weight.view(s, w), self.conv_state.bias, self.conv_proj.weight.view(n, w),
                     self.conv_proj.bias, self.gcn.conv1.weight.view(n, n), self.gcn.conv1.bias,
                     self.gcn.conv2.weight.view(s, s), self.conv_extend.weight.view(c, s), bn_w, bn_b, rm, rv), bn)


GloRe_Unit_2D = GloRe
