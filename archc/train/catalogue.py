"""The losses, optimizers and schedules a `train:` section may name, each declared once:
its torch class and the settings it takes (type and whether required). A setting left out
keeps torch's default, and the generated script does not write it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    torch: str
    settings: dict[str, str] = field(default_factory=dict)
    """Setting → its type: float, int, bool, or a list of one (`list[int]`)."""
    required: tuple[str, ...] = ()
    summary: str = ""
    one_hot: bool = False
    """A loss that compares the logits with one-hot targets rather than class indices."""


LOSSES = {
    "cross_entropy": Entry(
        "nn.CrossEntropyLoss", {"label_smoothing": "float"}, summary="softmax cross-entropy"
    ),
    "nll": Entry("nn.NLLLoss", summary="negative log-likelihood of log-probabilities"),
    "hinge": Entry("nn.MultiMarginLoss", {"margin": "float"}, summary="multi-class hinge"),
    "bce": Entry("nn.BCEWithLogitsLoss", summary="binary cross-entropy per class", one_hot=True),
    "mse": Entry("nn.MSELoss", summary="squared error to one-hot targets", one_hot=True),
    "l1": Entry("nn.L1Loss", summary="absolute error to one-hot targets", one_hot=True),
    "smooth_l1": Entry(
        "nn.SmoothL1Loss", {"beta": "float"}, summary="Huber-like error", one_hot=True
    ),
}

_DECAY = {"lr": "float", "weight_decay": "float"}
OPTIMIZERS = {
    "sgd": Entry(
        "torch.optim.SGD",
        {**_DECAY, "momentum": "float", "dampening": "float", "nesterov": "bool"},
        ("lr",),
        "stochastic gradient descent, with momentum or Nesterov's",
    ),
    "adam": Entry(
        "torch.optim.Adam",
        {**_DECAY, "betas": "list[float]", "eps": "float", "amsgrad": "bool"},
        summary="Adam (weight decay added to the gradient)",
    ),
    "adamw": Entry(
        "torch.optim.AdamW",
        {**_DECAY, "betas": "list[float]", "eps": "float", "amsgrad": "bool"},
        summary="Adam with decoupled weight decay",
    ),
    "rmsprop": Entry(
        "torch.optim.RMSprop",
        {**_DECAY, "alpha": "float", "eps": "float", "momentum": "float", "centered": "bool"},
        summary="RMSProp",
    ),
    "adagrad": Entry(
        "torch.optim.Adagrad", {**_DECAY, "lr_decay": "float", "eps": "float"}, summary="AdaGrad"
    ),
    "adadelta": Entry(
        "torch.optim.Adadelta", {**_DECAY, "rho": "float", "eps": "float"}, summary="Adadelta"
    ),
}

SCHEDULES = {
    "constant": Entry("", summary="the optimizer's learning rate throughout"),
    "step": Entry(
        "torch.optim.lr_scheduler.StepLR",
        {"step_size": "int", "gamma": "float"},
        ("step_size",),
        "times gamma every step_size epochs",
    ),
    "multi_step": Entry(
        "torch.optim.lr_scheduler.MultiStepLR",
        {"milestones": "list[int]", "gamma": "float"},
        ("milestones",),
        "times gamma at each milestone epoch",
    ),
    "exponential": Entry(
        "torch.optim.lr_scheduler.ExponentialLR",
        {"gamma": "float"},
        ("gamma",),
        "times gamma every epoch",
    ),
    "cosine": Entry(
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        {"eta_min": "float"},
        summary="cosine annealing to eta_min over the epochs after the warm-up",
    ),
}
