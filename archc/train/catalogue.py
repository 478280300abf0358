"""The losses, optimizers and schedules a `train:` section may name, each declared once:
its torch class, its jax form (optax) and the settings it takes (type and whether required).
A setting left out keeps torch's default, and the torch script does not write it; the jax
script writes torch's default where optax's differs, so that both train alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    torch: str
    settings: dict[str, str] = field(default_factory=dict)
    """Setting → its type: float, int, bool, or a list of one (`list[int]`)."""
    required: tuple[str, ...] = ()
    summary: str = ""
    one_hot: bool = False
    """A loss that compares the logits with one-hot targets rather than class indices."""
    jax: str = ""
    """The jax form: a loss's per-sample (or per-element) expression of `logits`, `labels`
    and `one_hot`; an optimizer's optax transformation; a schedule's optax schedule of
    `{lr}` and `{length}` (epochs). `{setting}` stands for a setting's value."""
    optax_names: dict[str, str] = field(default_factory=dict)
    """An optimizer's torch setting → its optax keyword ("b1,b2" unpacks a list)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """torch's defaults of the settings the jax form needs (a learning rate's, a weight
    decay's, or where optax's differ), and optax keywords fixed to torch's behaviour."""
    decoupled: bool = False
    """Weight decay applied beside the scaled step (AdamW), not added to the gradient."""
    targets: tuple[str, ...] = ("classes",)
    """A loss's targets: a class per image (`classes`, scores (N, K)), per pixel (`pixels`,
    scores (N, K, H, W)), or a box's corners x1, y1, x2, y2 (`boxes`, (N, 4))."""


@dataclass(frozen=True)
class Targets:
    """What a loss compares a model's predictions with, and how the test set is scored."""

    summary: str
    arrays: str
    """What an .npz's y_train and y_test hold."""
    metric: str
    """The test metric's key in the metrics log."""
    metric_name: str
    metric_doc: str


TARGETS = {
    "classes": Targets(
        "a class index per image, predicted as scores (N, K)",
        "integer labels",
        "accuracy",
        "accuracy",
        "Top-1 accuracy over the test set",
    ),
    "pixels": Targets(
        "a class index per pixel, predicted as score maps (N, K, H, W)",
        "integer class maps (N, H, W) at the output's size",
        "pixel_accuracy",
        "pixel accuracy",
        "The share of the test set's pixels whose class is predicted",
    ),
    "boxes": Targets(
        "a box per image, predicted as its corners x1, y1, x2, y2 (N, 4)",
        "float boxes (N, 4), corners x1, y1, x2, y2",
        "mean_iou",
        "mean IoU",
        "The mean IoU of the test set's boxes with their targets",
    ),
}


TAKEN = "jnp.take_along_axis(logits, labels[..., None], axis=-1)"
"""The logit (or log-probability) of each sample's (or pixel's) class, on an axis of one."""

LOSSES = {
    "cross_entropy": Entry(
        "nn.CrossEntropyLoss",
        {"label_smoothing": "float"},
        summary="softmax cross-entropy",
        jax="optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, {label_smoothing}))",
        defaults={"label_smoothing": 0.0},
        targets=("classes", "pixels"),
    ),
    "nll": Entry(
        "nn.NLLLoss",
        summary="negative log-likelihood of log-probabilities",
        jax=f"-{TAKEN}",
        targets=("classes", "pixels"),
    ),
    "dice": Entry(
        "DiceLoss",
        {"smooth": "float"},
        summary="soft Dice loss per image and class (optax's)",
        jax="optax.losses.dice_loss(logits, one_hot, smooth={smooth})",
        defaults={"smooth": 1.0},
        targets=("pixels",),
    ),
    "iou": Entry(
        "IoULoss",
        summary="1 - each box's IoU with its target",
        jax="iou_loss(logits, labels)",
        targets=("boxes",),
    ),
    "giou": Entry(
        "GIoULoss",
        summary="generalized IoU loss (torchvision's)",
        jax="giou_loss(logits, labels)",
        targets=("boxes",),
    ),
    "hinge": Entry(
        "nn.MultiMarginLoss",
        {"margin": "float"},
        summary="multi-class hinge",
        jax=f"jnp.where(one_hot > 0, 0.0, jnp.maximum(0.0, {{margin}} - {TAKEN} + logits))"
        ".sum(-1) / logits.shape[-1]",
        defaults={"margin": 1.0},
    ),
    "bce": Entry(
        "nn.BCEWithLogitsLoss",
        summary="binary cross-entropy per class",
        one_hot=True,
        jax="optax.sigmoid_binary_cross_entropy(logits, one_hot)",
    ),
    "mse": Entry(
        "nn.MSELoss",
        summary="squared error to one-hot targets",
        one_hot=True,
        jax="optax.squared_error(logits, one_hot)",
    ),
    "l1": Entry(
        "nn.L1Loss",
        summary="absolute error to one-hot targets",
        one_hot=True,
        jax="jnp.abs(logits - one_hot)",
    ),
    "smooth_l1": Entry(
        "nn.SmoothL1Loss",
        {"beta": "float"},
        summary="Huber-like error",
        one_hot=True,
        jax="optax.huber_loss(logits, one_hot, delta={beta}) / {beta}",
        defaults={"beta": 1.0},
    ),
    "focal": Entry(
        "SigmoidFocalLoss",
        {"alpha": "float", "gamma": "float"},
        summary="sigmoid focal loss per class (RetinaNet's)",
        one_hot=True,
        jax="optax.sigmoid_focal_loss(logits, one_hot, alpha={alpha}, gamma={gamma})",
        defaults={"alpha": 0.25, "gamma": 2.0},
    ),
}

_DECAY = {"lr": "float", "weight_decay": "float"}
_BETAS = {"betas": "b1,b2", "eps": "eps"}
OPTIMIZERS = {
    "sgd": Entry(
        "torch.optim.SGD",
        {**_DECAY, "momentum": "float", "dampening": "float", "nesterov": "bool"},
        ("lr",),
        "stochastic gradient descent, with momentum or Nesterov's",
        jax="optax.sgd",
        optax_names={"momentum": "momentum", "nesterov": "nesterov"},
    ),
    "adam": Entry(
        "torch.optim.Adam",
        {**_DECAY, "betas": "list[float]", "eps": "float", "amsgrad": "bool"},
        summary="Adam (weight decay added to the gradient)",
        jax="optax.adam",
        optax_names=_BETAS,
        defaults={"lr": 1e-3},
    ),
    "adamw": Entry(
        "torch.optim.AdamW",
        {**_DECAY, "betas": "list[float]", "eps": "float", "amsgrad": "bool"},
        summary="Adam with decoupled weight decay",
        jax="optax.scale_by_adam",
        optax_names=_BETAS,
        defaults={"lr": 1e-3, "weight_decay": 1e-2},
        decoupled=True,
    ),
    "rmsprop": Entry(
        "torch.optim.RMSprop",
        {**_DECAY, "alpha": "float", "eps": "float", "momentum": "float", "centered": "bool"},
        summary="RMSProp",
        jax="optax.rmsprop",
        optax_names={
            "alpha": "decay",
            "eps": "eps",
            "momentum": "momentum",
            "centered": "centered",
        },
        defaults={"lr": 1e-2, "alpha": 0.99, "eps_in_sqrt": False},
    ),
    "adagrad": Entry(
        "torch.optim.Adagrad",
        {**_DECAY, "lr_decay": "float", "eps": "float"},
        summary="AdaGrad",
        jax="optax.adagrad",
        # optax adds eps under the square root, torch (1e-10) outside it: none is the nearer.
        defaults={"lr": 1e-2, "initial_accumulator_value": 0.0, "eps": 0.0},
    ),
    "adadelta": Entry(
        "torch.optim.Adadelta",
        {**_DECAY, "rho": "float", "eps": "float"},
        summary="Adadelta",
        jax="optax.adadelta",
        optax_names={"rho": "rho", "eps": "eps"},
        defaults={"lr": 1.0},
    ),
}

SCHEDULES = {
    "constant": Entry(
        "", summary="the optimizer's learning rate throughout", jax="optax.constant_schedule({lr})"
    ),
    "step": Entry(
        "torch.optim.lr_scheduler.StepLR",
        {"step_size": "int", "gamma": "float"},
        ("step_size",),
        "times gamma every step_size epochs",
        jax="optax.exponential_decay({lr}, {step_size}, {gamma}, staircase=True)",
        defaults={"gamma": 0.1},
    ),
    "multi_step": Entry(
        "torch.optim.lr_scheduler.MultiStepLR",
        {"milestones": "list[int]", "gamma": "float"},
        ("milestones",),
        "times gamma at each milestone epoch",
        jax="optax.piecewise_constant_schedule({lr}, dict.fromkeys({milestones}, {gamma}))",
        defaults={"gamma": 0.1},
    ),
    "exponential": Entry(
        "torch.optim.lr_scheduler.ExponentialLR",
        {"gamma": "float"},
        ("gamma",),
        "times gamma every epoch",
        jax="optax.exponential_decay({lr}, 1, {gamma})",
    ),
    "cosine": Entry(
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        {"eta_min": "float"},
        summary="cosine annealing to eta_min over the epochs after the warm-up",
        jax="optax.cosine_decay_schedule({lr}, {length}, alpha={eta_min} / {lr})",
        defaults={"eta_min": 0.0},
    ),
}
