"""FBKD attention-guided distillation (kdloss/losses/fbkd; Zhang & Ma, ICLR 2021).

Attention maps and masks, the masked feature loss L_AM, the attention-transfer loss L_AT (paper form
on the maps, code form on the caller's adapted pooled features), the non-local distillation L_NLD
(two non-local blocks and an adaptation conv per level) and the weighted total over pyramid levels. See docs/losses/fbkd.md for the formulas and presets, docs/pytorch.md for the bridge.
"""

import dataclasses
import re
from typing import NamedTuple, Optional

import torch

from . import _C, ops
from ._common import FORWARD
from ._function import Loss

__all__ = ["Config", "MaskOptions", "Level", "NonLocalParams", "NonLocalLevel", "NonLocalBlock", "attention_masks", "spatial_attention", "channel_attention",
           "masked_feature_loss", "attention_transfer_loss", "pooled_attention_transfer_loss", "total_loss",
           "FBKDLoss"]


@dataclasses.dataclass
class MaskOptions:
    """kdloss::fbkd::MaskOptions: mask form ("code": mean of two softmaxes; "paper": one softmax of
    the summed maps) and the temperatures of the position and channel softmaxes."""
    form: str = "code"
    spatial_temperature: float = 0.5
    channel_temperature: float = 0.5


@dataclasses.dataclass
class Config:
    """kdloss::fbkd::Config: value = sum over levels of w_am * L_AM + w_at * L_AT + w_nld * L_NLD.
    The default is the official two-stage code setting (Config.code_two_stage()). L_NLD's blocks take
    their per-level settings from `non_local_preset`: "official" (NonLocalBlockND: dot product, pools 8,
    4, 2, 2, 2, m = 64, 64, 128, 128, 128) or "mmrazor" (its connectors: pools 16, 8, 4, 4, m = C/4, C/4,
    C/2, C/2); the term runs on the levels that carry a NonLocalLevel (all or none)."""
    mask_form: str = "code"
    transfer_form: str = "code"
    spatial_temperature: float = 0.5
    channel_temperature: float = 0.5
    w_am: float = 7e-5
    w_at: float = 4e-3
    use_channel_mask: bool = False
    w_nld: float = 7e-5
    non_local_preset: str = "official"
    non_local_training: bool = True

    @classmethod
    def code_two_stage(cls):
        """Official two-stage code: reproduces the published two-stage numbers (w_nld = 7e-5, official blocks)."""
        return cls()

    @classmethod
    def mmrazor_two_stage(cls):
        """mmrazor's FBKD config: code_two_stage with mmrazor's non-local blocks (pools 16, 8, 4, 4)."""
        return cls(non_local_preset="mmrazor")

    @classmethod
    def code_one_stage(cls):
        """Official one-stage code (RetinaNet): t = 0.1, weights x6 (w_nld = 4.2e-4), channel mask in L_AM."""
        return cls(spatial_temperature=0.1, channel_temperature=0.1, w_am=4.2e-4, w_at=2.4e-2, use_channel_mask=True,
                   w_nld=4.2e-4)

    @classmethod
    def paper_two_stage(cls):
        """The paper as written, two-stage (paper masks and L_AT, T = 0.1, w_at = w_nld = 7e-5, w_am = 4e-3)."""
        return cls(mask_form="paper", transfer_form="paper", spatial_temperature=0.1, channel_temperature=0.1,
                   w_am=4e-3, w_at=7e-5, use_channel_mask=True, w_nld=7e-5)

    @classmethod
    def paper_one_stage(cls):
        """The paper as written, one-stage (T = 0.5, w_at = w_nld = 4e-4, w_am = 2e-2)."""
        return cls(mask_form="paper", transfer_form="paper", spatial_temperature=0.5, channel_temperature=0.5,
                   w_am=2e-2, w_at=4e-4, use_channel_mask=True, w_nld=4e-4)

    def non_local_pool(self, level):
        """The sub-sample factor of g and phi in the blocks at pyramid level `level` (0 = finest)."""
        if self.non_local_preset == "official":
            return (8, 4, 2, 2, 2)[min(level, 4)]
        return 2 * (8, 4, 2, 2)[min(level, 3)]

    def non_local_inter_channels(self, level, channels):
        """Inter channels m of the preset's blocks at `level` for C = `channels`."""
        if self.non_local_preset == "official":
            return 64 if level <= 1 else 128
        return max(channels // (4 if level < 2 else 2), 1)

    def mask(self):
        return MaskOptions(self.mask_form, self.spatial_temperature, self.channel_temperature)

    def _dict(self):
        return {"mask_form": self.mask_form, "transfer_form": self.transfer_form,
                "spatial_temperature": float(self.spatial_temperature),
                "channel_temperature": float(self.channel_temperature), "w_am": float(self.w_am),
                "w_at": float(self.w_at), "use_channel_mask": bool(self.use_channel_mask),
                "w_nld": float(self.w_nld), "non_local_preset": self.non_local_preset,
                "non_local_training": bool(self.non_local_training)}


_BLOCK_FIELDS = ("g_weight", "g_bias", "theta_weight", "theta_bias", "phi_weight", "phi_bias",
                 "concat_project_weight", "conv_out_weight", "conv_out_bias", "bn_weight", "bn_bias")


class NonLocalParams(NamedTuple):
    """One non-local block's parameters (ops::NonLocalArgs): 1x1 conv weights as [m, C(, 1, 1)] etc.;
    None where the block has none (a bias, or gamma/beta meaning 1/0)."""
    g_weight: Optional[torch.Tensor] = None
    g_bias: Optional[torch.Tensor] = None
    theta_weight: Optional[torch.Tensor] = None
    theta_bias: Optional[torch.Tensor] = None
    phi_weight: Optional[torch.Tensor] = None
    phi_bias: Optional[torch.Tensor] = None
    concat_project_weight: Optional[torch.Tensor] = None
    conv_out_weight: Optional[torch.Tensor] = None
    conv_out_bias: Optional[torch.Tensor] = None
    bn_weight: Optional[torch.Tensor] = None
    bn_bias: Optional[torch.Tensor] = None


class NonLocalLevel(NamedTuple):
    """L_NLD's inputs at one level: NL_S and NL_T parameters, the adaptation conv Conv2d(C, C, 1), and an
    optional [4, C] buffer the forward fills with the blocks' BN batch mean and (unbiased) variance
    (student mean, var, teacher mean, var)."""
    student: NonLocalParams
    teacher: NonLocalParams
    adapt_weight: torch.Tensor
    adapt_bias: Optional[torch.Tensor] = None
    bn_stats: Optional[torch.Tensor] = None


class Level(NamedTuple):
    """One pyramid level (kdloss::fbkd::Level). student S and teacher T are [B,C,H,W];
    student_adapted A = adapter_1x1(S) (default: S itself); student_channel C_hat = Linear(mean_hw(S))
    [B,C]; student_spatial S_hat = Conv3x3(mean_c(S)) [B,1,H,W] (required by the code-form L_AT)."""
    student: Optional[torch.Tensor]
    teacher: torch.Tensor
    student_adapted: Optional[torch.Tensor] = None
    student_channel: Optional[torch.Tensor] = None
    student_spatial: Optional[torch.Tensor] = None
    non_local: Optional[NonLocalLevel] = None


def attention_masks(student, teacher, options=None, spatial=True, channel=True):
    """kdloss::fbkd::attention_masks: (M_s [B,1,H,W], M_c [B,C]) of a student/teacher pair, constants
    (no gradient; the reference code detaches them). Pass spatial/channel=False to skip one (None)."""
    options = options or MaskOptions()
    want = [name for name, on in (("mask_spatial", spatial), ("mask_channel", channel)) if on]
    masks = _C.fbkd_attention_masks(FORWARD, (student, teacher), dataclasses.asdict(options), want=want)
    return masks.get("mask_spatial"), masks.get("mask_channel")


# The generic Function over each binding (python/csrc/fbkd.cpp, ops.cpp); every value is a scalar.
_spatial_attention = Loss(_C.fbkd_spatial_attention, fuse=False)
_channel_attention = Loss(_C.fbkd_channel_attention, fuse=False)
_masked_feature = Loss(_C.fbkd_masked_feature_loss, teachers=("teacher",))
_attention_transfer = Loss(_C.fbkd_attention_transfer_loss)
_pooled_attention_transfer = Loss(_C.fbkd_pooled_attention_transfer_loss)


def _total_grads(config, inputs):
    """The gradients the total has for these levels: a term of weight 0 gives none."""
    levels = inputs["levels"]
    am = config["w_am"] != 0
    at_paper = config["w_at"] != 0 and config["transfer_form"] == "paper"
    nld = config["w_nld"] != 0 and any(len(lv) > 5 and lv[-3] is not None for lv in levels)
    names = set()
    for i, lv in enumerate(levels):
        s, t, a, c, sp = lv[:5]
        if nld:
            names.add("levels[%d].grad_student" % i)
            names.update("levels[%d].grad_%s_nl_%s" % (i, side, f) for side in ("student", "teacher")
                         for f in _BLOCK_FIELDS)
            names.update("levels[%d].grad_non_local_adapt_%s" % (i, f) for f in ("weight", "bias"))
        if am and a is not None:
            names.add("levels[%d].grad_student_adapted" % i)
        if at_paper or (am and a is None):  # without an adapter (A = S) L_AM's part goes to S
            names.add("levels[%d].grad_student" % i)
        names.update("levels[%d].%s" % (i, g) for g in ("grad_student_channel", "grad_student_spatial"))
    return names


_total = Loss(_C.fbkd_total_loss, grads=_total_grads,
              python_names={"mask_form": "config.mask_form", "transfer_form": "config.transfer_form"})
# The same entry with L_NLD's blocks per level (fields of _flat_level).
_total_non_local = Loss(_C.fbkd_total_loss_non_local, grads=_total_grads,
                        python_names={"mask_form": "config.mask_form", "transfer_form": "config.transfer_form"})


def spatial_attention(x):
    """kdloss::fbkd::spatial_attention: G_s(x) = mean_c |x|, [B,1,H,W] (differentiable)."""
    return _spatial_attention(x)


def channel_attention(x):
    """kdloss::fbkd::channel_attention: G_c(x) = mean_hw |x|, [B,C] (differentiable)."""
    return _channel_attention(x)


def masked_feature_loss(student_adapted, teacher, mask_spatial, mask_channel=None):
    """kdloss::fbkd::masked_feature_loss: L_AM = sqrt(sum (T - A)^2 * M_s [* M_c]) over the whole batch.
    Gradient to student_adapted only (masks and teacher are constants)."""
    return _masked_feature(student_adapted, teacher, mask_spatial, mask_channel)


def attention_transfer_loss(student, teacher):
    """kdloss::fbkd::attention_transfer_loss (paper form): ||G_s(S) - G_s(T)||_F + ||G_c(S) - G_c(T)||_F."""
    return _attention_transfer(student, teacher)


def pooled_attention_transfer_loss(student_channel, student_spatial, teacher):
    """kdloss::fbkd::pooled_attention_transfer_loss (code form):
    ||mean_hw(T) - C_hat||_F + ||mean_c(T) - S_hat||_F, with C_hat [B,C] and S_hat [B,1,H,W]."""
    return _pooled_attention_transfer(student_channel, student_spatial, teacher)


def _as_level(level):
    if isinstance(level, Level):
        return level
    if isinstance(level, dict):
        return Level(**level)
    return Level(*level)


def _flat_level(level):
    """A Level as the binding's flat tuple: the five tensors, both blocks' 11 parameters, the adaptation
    conv and the statistics buffer."""
    lv = _as_level(level)
    nl = lv.non_local
    if nl is None:
        return tuple(lv[:5]) + (None,) * 25
    nl = NonLocalLevel(*nl) if not isinstance(nl, NonLocalLevel) else nl
    return (tuple(lv[:5]) + tuple(NonLocalParams(*nl.student)) + tuple(NonLocalParams(*nl.teacher))
            + (nl.adapt_weight, nl.adapt_bias, nl.bn_stats))


def total_loss(levels, config=None):
    """kdloss::fbkd::total_loss: sum over levels of w_am * L_AM + w_at * L_AT + w_nld * L_NLD (one call
    for the pyramid).

    levels: a sequence of Level (or tuples / dicts with its fields). Gradients go to student (paper
    L_AT, L_AM when student_adapted is None, L_NLD), student_adapted, student_channel, student_spatial
    and every parameter of Level.non_local (both blocks, the teacher's included, and the adaptation
    conv); teachers get none. L_NLD runs when config.w_nld != 0 and the levels carry NonLocalLevel
    (all of them). config: a Config (default Config.code_two_stage())."""
    config = config or Config()
    levels = [_as_level(lv) for lv in levels]
    if any(lv.non_local is not None for lv in levels):
        return _total_non_local([_flat_level(lv) for lv in levels], **config._dict())
    return _total([tuple(lv[:5]) for lv in levels], **config._dict())


# Reference state_dict names -> NonLocalBlock names: mmcv NonLocal2d / mmrazor NonLocal2dMaxpoolNstride
# (g.conv.weight, g.0.conv.weight with mmcv's pooling, g.0.0.conv.weight with mmrazor's second one;
# conv_out.conv.weight, conv_out.bn.*) and the official NonLocalBlockND (g.weight, W.0.*, W.1.*).
_BLOCK_KEYS = ((re.compile(r"^(g|theta|phi)(\.0)*\.conv\."), r"\1."),
               (re.compile(r"^conv_out\.conv\."), "conv_out."),
               (re.compile(r"^conv_out\.bn\."), "bn."),
               (re.compile(r"^W\.0\."), "conv_out."),
               (re.compile(r"^W\.1\."), "bn."))


def _block_key(key):
    for pattern, to in _BLOCK_KEYS:
        new = pattern.sub(to, key)
        if new != key:
            return new
    return key


class NonLocalBlock(torch.nn.Module):
    """The parameters of one dot-product non-local block of L_NLD (z = x + BN(conv_out(y)); its forward and
    backward run inside total_loss): g, theta, phi = Conv2d(C, m, 1), conv_out = Conv2d(m, C, 1) (bias:
    official yes, mmrazor no), bn = BatchNorm2d(C) initialised to gamma = beta = 0 (both codes). init
    "mmrazor": mmcv's normal_init(std=0.01) of g, theta, phi (bias 0); "official": PyTorch's default.

    load_reference_state_dict(sd) takes a state_dict of mmcv's NonLocal2d, mmrazor's
    NonLocal2dMaxpoolNstride or the official NonLocalBlockND as it is (names mapped: g.0.0.conv.weight ->
    g.weight, conv_out.conv.* -> conv_out.*, conv_out.bn.* -> bn.*, W.0.* -> conv_out.*, W.1.* -> bn.*).
    The running statistics of bn update after each training forward as PyTorch's BatchNorm2d does."""

    def __init__(self, channels, inter_channels, conv_out_bias=True, init="official"):
        super().__init__()
        self.g = torch.nn.Conv2d(channels, inter_channels, 1)
        self.theta = torch.nn.Conv2d(channels, inter_channels, 1)
        self.phi = torch.nn.Conv2d(channels, inter_channels, 1)
        self.conv_out = torch.nn.Conv2d(inter_channels, channels, 1, bias=conv_out_bias)
        self.bn = torch.nn.BatchNorm2d(channels)
        torch.nn.init.zeros_(self.bn.weight)
        torch.nn.init.zeros_(self.bn.bias)
        if init == "mmrazor":
            for conv in (self.g, self.theta, self.phi):
                torch.nn.init.normal_(conv.weight, 0, 0.01)
                torch.nn.init.zeros_(conv.bias)

    def params(self):
        """The block's parameters as NonLocalParams (what total_loss takes)."""
        return NonLocalParams(self.g.weight, self.g.bias, self.theta.weight, self.theta.bias, self.phi.weight,
                              self.phi.bias, None, self.conv_out.weight, self.conv_out.bias, self.bn.weight,
                              self.bn.bias)

    @torch.no_grad()
    def update_running_stats(self, mean, var):
        """running = (1 - momentum) running + momentum batch (var: the unbiased batch variance), as
        BatchNorm2d in training mode; momentum None: the cumulative average."""
        bn = self.bn
        if not bn.track_running_stats:
            return
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - momentum).add_(mean.to(bn.running_mean.dtype), alpha=momentum)
        bn.running_var.mul_(1 - momentum).add_(var.to(bn.running_var.dtype), alpha=momentum)

    def load_reference_state_dict(self, state_dict, strict=True):
        return self.load_state_dict({_block_key(k): v for k, v in state_dict.items()}, strict=strict)


# Reference names of the per-level modules -> FBKDLoss's (adapters[level][name]).
_CONNECTOR_KEYS = {"adaptation_layers": "adapted", "channel_wise_adaptation": "channel",
                   "spatial_wise_adaptation": "spatial", "non_local_adaptation": "non_local_adaptation",
                   "student_non_local": "student_non_local", "teacher_non_local": "teacher_non_local"}


class FBKDLoss(torch.nn.Module):
    """The attention-guided FBKD loss over a feature pyramid, as a module.

    FBKDLoss(config)(levels) computes total_loss(levels, config) for Level inputs made by the caller.
    With `channels` and `num_levels` it also owns the student-side adapters of the official code
    (per level: Conv2d(C, C, 1) for A, Linear(C, C) on mean_hw(S) for C_hat, Conv2d(1, 1, 3, padding=1)
    on mean_c(S) for S_hat; PyTorch default init) and, when config.w_nld != 0 (or non_local=True), the
    non-local blocks NL_S, NL_T (NonLocalBlock, the preset's m per level) and the adaptation conv of
    L_NLD: adapters[i]["student_non_local"], ["teacher_non_local"], ["non_local_adaptation"]
    (load_reference_state_dict maps the official code's and mmrazor's state_dicts onto them). It takes
    lists of student and teacher features:

        loss_fn = FBKDLoss(Config.code_two_stage(), channels=256, num_levels=4)
        loss = loss_fn(student_feats, teacher_feats)   # lists of [B,256,H,W]
    """

    def __init__(self, config=None, channels=None, num_levels=None, non_local=None):
        super().__init__()
        self.config = config or Config()
        self.adapters = None
        self.non_local = False
        if channels is not None or num_levels is not None:
            if channels is None or num_levels is None:
                raise ValueError("kdloss_torch.fbkd.FBKDLoss: pass both 'channels' and 'num_levels' to get adapters")
            self.non_local = self.config.w_nld != 0 if non_local is None else bool(non_local)
            self.adapters = torch.nn.ModuleList()
            for level in range(num_levels):
                mods = {"adapted": torch.nn.Conv2d(channels, channels, 1),
                        "channel": torch.nn.Linear(channels, channels),
                        "spatial": torch.nn.Conv2d(1, 1, 3, padding=1)}
                if self.non_local:
                    m = self.config.non_local_inter_channels(level, channels)
                    official = self.config.non_local_preset == "official"
                    for side in ("student_non_local", "teacher_non_local"):
                        mods[side] = NonLocalBlock(channels, m, conv_out_bias=official,
                                                   init=self.config.non_local_preset)
                    mods["non_local_adaptation"] = torch.nn.Conv2d(channels, channels, 1)
                self.adapters.append(torch.nn.ModuleDict(mods))

    def load_reference_state_dict(self, state_dict, level=None, strict=True):
        """Loads the official code's or mmrazor's adapters and non-local blocks as they are.

        Official two_stage.py modules (lists over levels): adaptation_layers.i, channel_wise_adaptation.i,
        spatial_wise_adaptation.i, student_non_local.i, teacher_non_local.i, non_local_adaptation.i: pass
        that state_dict (or the detector's, these keys with any prefix). mmrazor: one level's
        FBKDStudentConnector and FBKDTeacherConnector state_dicts (merged) with `level`: its
        adaptation_layers, channel_wise_adaptation, spatial_wise_adaptation, student_non_local,
        non_local_adaptation and teacher_non_local. Mapping: adaptation_layers -> adapters[i].adapted,
        channel_wise_adaptation -> .channel, spatial_wise_adaptation -> .spatial, the rest by name; inside
        a block, NonLocalBlock.load_reference_state_dict's names."""
        mapped = {}
        for key, value in state_dict.items():
            parts = key.split(".")
            for j, p in enumerate(parts):
                if p in _CONNECTOR_KEYS:
                    break
            else:
                continue
            rest = parts[j + 1:]
            i = level
            if level is None:
                i, rest = int(rest[0]), rest[1:]
            name = _CONNECTOR_KEYS[parts[j]]
            sub = ".".join(rest)
            if name.endswith("_non_local"):
                sub = _block_key(sub)
            mapped["adapters.%d.%s.%s" % (i, name, sub)] = value
        own = self.state_dict()
        if level is not None:  # one level: keep the others' entries
            own.update(mapped)
            mapped = own
        return self.load_state_dict(mapped, strict=strict)

    def levels(self, students, teachers):
        """The Level inputs the adapters make from student and teacher features."""
        if len(students) != len(self.adapters) or len(teachers) != len(self.adapters):
            raise ValueError("kdloss_torch.fbkd.FBKDLoss: expected %d student and teacher levels, got %d and %d"
                             % (len(self.adapters), len(students), len(teachers)))
        code = self.config.transfer_form == "code" and self.config.w_at != 0
        out = []
        for s, t, ad in zip(students, teachers, self.adapters):
            a = ad["adapted"](s) if self.config.w_am != 0 else None
            c = ad["channel"](ops.mean_over_positions(s)) if code else None
            sp = ad["spatial"](ops.mean_over_channels(s)) if code else None
            nl = None
            if self.non_local:
                stats = torch.empty(4, s.shape[1], dtype=s.dtype, device=s.device)
                conv = ad["non_local_adaptation"]
                nl = NonLocalLevel(ad["student_non_local"].params(), ad["teacher_non_local"].params(), conv.weight,
                                   conv.bias, stats)
            out.append(Level(s, t, a, c, sp, nl))
        return out

    def forward(self, students, teachers=None):
        if teachers is None:
            return total_loss(students, self.config)
        if self.adapters is None:
            return total_loss([Level(s, t) for s, t in zip(students, teachers)], self.config)
        levels = self.levels(students, teachers)
        config = self.config if self.non_local else dataclasses.replace(self.config, w_nld=0.0)
        value = total_loss(levels, config)
        if self.non_local and self.training and config.w_nld != 0:  # BN running statistics, as PyTorch
            for lv, ad in zip(levels, self.adapters):
                st = lv.non_local.bn_stats
                ad["student_non_local"].update_running_stats(st[0], st[1])
                ad["teacher_non_local"].update_running_stats(st[2], st[3])
        return value

    def extra_repr(self):
        return "config=%r" % (self.config,)
