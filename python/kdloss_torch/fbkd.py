"""FBKD attention-guided distillation (kdloss/losses/fbkd; Zhang & Ma, ICLR 2021).

Attention maps and masks, the masked feature loss L_AM, the attention-transfer loss L_AT (paper form
on the maps, code form on the caller's adapted pooled features) and the weighted total over pyramid
levels. See docs/losses/fbkd.md for the formulas and presets, docs/pytorch.md for the bridge.
"""

import dataclasses
from typing import NamedTuple, Optional

import torch

from . import _C, ops
from ._common import FORWARD
from ._function import Loss

__all__ = ["Config", "MaskOptions", "Level", "attention_masks", "spatial_attention", "channel_attention",
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
    """kdloss::fbkd::Config: value = sum over levels of w_am * L_AM + w_at * L_AT.
    The default is the official two-stage code / mmrazor setting (Config.code_two_stage())."""
    mask_form: str = "code"
    transfer_form: str = "code"
    spatial_temperature: float = 0.5
    channel_temperature: float = 0.5
    w_am: float = 7e-5
    w_at: float = 4e-3
    use_channel_mask: bool = False

    @classmethod
    def code_two_stage(cls):
        """Official two-stage code and mmrazor: reproduces the published two-stage numbers."""
        return cls()

    @classmethod
    def code_one_stage(cls):
        """Official one-stage code (RetinaNet): t = 0.1, weights x6, channel mask in L_AM."""
        return cls(spatial_temperature=0.1, channel_temperature=0.1, w_am=4.2e-4, w_at=2.4e-2, use_channel_mask=True)

    @classmethod
    def paper_two_stage(cls):
        """The paper as written, two-stage (paper masks and L_AT, T = 0.1, w_at = 7e-5, w_am = 4e-3)."""
        return cls(mask_form="paper", transfer_form="paper", spatial_temperature=0.1, channel_temperature=0.1,
                   w_am=4e-3, w_at=7e-5, use_channel_mask=True)

    @classmethod
    def paper_one_stage(cls):
        """The paper as written, one-stage (T = 0.5, w_at = 4e-4, w_am = 2e-2)."""
        return cls(mask_form="paper", transfer_form="paper", spatial_temperature=0.5, channel_temperature=0.5,
                   w_am=2e-2, w_at=4e-4, use_channel_mask=True)

    def mask(self):
        return MaskOptions(self.mask_form, self.spatial_temperature, self.channel_temperature)

    def _dict(self):
        return {"mask_form": self.mask_form, "transfer_form": self.transfer_form,
                "spatial_temperature": float(self.spatial_temperature),
                "channel_temperature": float(self.channel_temperature), "w_am": float(self.w_am),
                "w_at": float(self.w_at), "use_channel_mask": bool(self.use_channel_mask)}


class Level(NamedTuple):
    """One pyramid level (kdloss::fbkd::Level). student S and teacher T are [B,C,H,W];
    student_adapted A = adapter_1x1(S) (default: S itself); student_channel C_hat = Linear(mean_hw(S))
    [B,C]; student_spatial S_hat = Conv3x3(mean_c(S)) [B,1,H,W] (required by the code-form L_AT)."""
    student: Optional[torch.Tensor]
    teacher: torch.Tensor
    student_adapted: Optional[torch.Tensor] = None
    student_channel: Optional[torch.Tensor] = None
    student_spatial: Optional[torch.Tensor] = None


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
    names = set()
    for i, (s, t, a, c, sp) in enumerate(levels):
        if am and a is not None:
            names.add("levels[%d].grad_student_adapted" % i)
        if at_paper or (am and a is None):  # without an adapter (A = S) L_AM's part goes to S
            names.add("levels[%d].grad_student" % i)
        names.update("levels[%d].%s" % (i, g) for g in ("grad_student_channel", "grad_student_spatial"))
    return names


_total = Loss(_C.fbkd_total_loss, grads=_total_grads,
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


def total_loss(levels, config=None):
    """kdloss::fbkd::total_loss: sum over levels of w_am * L_AM + w_at * L_AT (one call for the pyramid).

    levels: a sequence of Level (or tuples / dicts with its fields). Gradients go to student (paper
    L_AT, and L_AM when student_adapted is None), student_adapted, student_channel and student_spatial;
    teachers get none. config: a Config (default Config.code_two_stage())."""
    config = config or Config()
    return _total([_as_level(lv) for lv in levels], **config._dict())


class FBKDLoss(torch.nn.Module):
    """The attention-guided FBKD loss over a feature pyramid, as a module.

    FBKDLoss(config)(levels) computes total_loss(levels, config) for Level inputs made by the caller.
    With `channels` and `num_levels` it also owns the student-side adapters of the official code
    (per level: Conv2d(C, C, 1) for A, Linear(C, C) on mean_hw(S) for C_hat, Conv2d(1, 1, 3, padding=1)
    on mean_c(S) for S_hat; PyTorch default init) and takes lists of student and teacher features:

        loss_fn = FBKDLoss(Config.code_two_stage(), channels=256, num_levels=4)
        loss = loss_fn(student_feats, teacher_feats)   # lists of [B,256,H,W]
    """

    def __init__(self, config=None, channels=None, num_levels=None):
        super().__init__()
        self.config = config or Config()
        self.adapters = None
        if channels is not None or num_levels is not None:
            if channels is None or num_levels is None:
                raise ValueError("kdloss_torch.fbkd.FBKDLoss: pass both 'channels' and 'num_levels' to get adapters")
            self.adapters = torch.nn.ModuleList(torch.nn.ModuleDict({
                "adapted": torch.nn.Conv2d(channels, channels, 1),
                "channel": torch.nn.Linear(channels, channels),
                "spatial": torch.nn.Conv2d(1, 1, 3, padding=1),
            }) for _ in range(num_levels))

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
            out.append(Level(s, t, a, c, sp))
        return out

    def forward(self, students, teachers=None):
        if teachers is None:
            return total_loss(students, self.config)
        if self.adapters is None:
            return total_loss([Level(s, t) for s, t in zip(students, teachers)], self.config)
        return total_loss(self.levels(students, teachers), self.config)

    def extra_repr(self):
        return "config=%r" % (self.config,)
