"""Helpers that archc copies into generated flax files (only those a file uses).

This file is read as text, never imported by archc: emission must not import jax. Each
top-level definition is one helper; it is linted and tested like the code it lands in.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class BatchNorm(nnx.Module):
    """Batch normalisation with PyTorch's semantics on the channel axis (last, or `axis`).

    `momentum` weighs the new batch statistic, as in PyTorch (flax's own is 1 - momentum), and
    the running variance tracks the unbiased batch variance, so training in either framework
    starts from the same state. `model.eval()` switches it to the running statistics. It takes
    `rngs` and draws nothing, so a norm param can hold it or nnx.LayerNorm alike.
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        axis: int = -1,
        rngs: nnx.Rngs | None = None,
    ) -> None:
        self.weight = nnx.Param(jnp.ones(num_features))
        self.bias = nnx.Param(jnp.zeros(num_features))
        self.running_mean = nnx.BatchStat(jnp.zeros(num_features))
        self.running_var = nnx.BatchStat(jnp.ones(num_features))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.eps = eps
        self.momentum = momentum
        self.axis = axis
        self.use_running_average = False
        self.dtype: Any = None  # of the result; None: the input's (statistics in float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or x.dtype
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        axis = self.axis % x.ndim
        reduce = tuple(i for i in range(x.ndim) if i != axis)
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = jnp.mean(x, axis=reduce)
            var = jnp.mean(jnp.square(x - mean.reshape(shape)), axis=reduce)
            count = x.size // x.shape[axis]
            unbiased = var * count / max(count - 1, 1)
            keep = 1 - self.momentum
            self.running_mean[...] = keep * self.running_mean[...] + self.momentum * mean
            self.running_var[...] = keep * self.running_var[...] + self.momentum * unbiased
            self.num_batches_tracked[...] += 1
        scale = self.weight[...] * jax.lax.rsqrt(var + self.eps)
        y = (x - mean.reshape(shape)) * scale.reshape(shape) + self.bias[...].reshape(shape)
        return y.astype(dtype)


class Frozen(nnx.BatchStat):
    """A parameter the spec freezes (`frozen:`): state, as FrozenBatchNorm's weight is, so
    that optimizers and gradients over nnx.Param leave it, as torch leaves a parameter
    that does not require grad."""


def freeze_params(module: Any, when: bool = True) -> Any:
    """The module (or a parameter), its parameters made Frozen where `when` holds."""
    if not when:
        return module
    if isinstance(module, nnx.Param):
        return Frozen(module.get_value())
    for _, node in list(nnx.iter_graph(module)):
        if isinstance(node, nnx.Module):
            for name, value in list(vars(node).items()):
                if isinstance(value, nnx.Param):
                    setattr(node, name, Frozen(value.get_value()))
    return module


class FrozenBatchNorm(nnx.Module):
    """BatchNorm with fixed statistics and affine terms, all state rather than parameters, as
    torchvision's FrozenBatchNorm2d (its detection backbones); channels last. It takes `rngs`,
    as BatchNorm does, and draws nothing."""

    def __init__(
        self, num_features: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None
    ) -> None:
        self.weight = nnx.BatchStat(jnp.ones(num_features))
        self.bias = nnx.BatchStat(jnp.zeros(num_features))
        self.running_mean = nnx.BatchStat(jnp.zeros(num_features))
        self.running_var = nnx.BatchStat(jnp.ones(num_features))
        self.eps = eps
        self.dtype: Any = None  # of the result; None: the input's

    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.weight[...] * jax.lax.rsqrt(self.running_var[...] + self.eps)
        shift = self.bias[...] - self.running_mean[...] * scale
        dtype = self.dtype or x.dtype
        return x.astype(dtype) * scale.astype(dtype) + shift.astype(dtype)


def set_dtypes(model: nnx.Module, dtype: Any, param_dtype: Any) -> nnx.Module:
    """The model computing in `dtype` (jnp.bfloat16: each conv, linear and norm casts its
    input and weights to it; None: as its input) from parameters stored in `param_dtype`
    (float32 keeps master weights for training)."""
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and hasattr(node, "dtype"):
            node.dtype = dtype
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda value: value.astype(param_dtype), params))
    return model


def jit_forward(model: nnx.Module) -> Any:
    """`model(x)` under jax.jit, its state (batch statistics in training) passed through the
    compiled call and donated, so that XLA updates it in place; the model is kept current."""
    graph, state = nnx.split(model)

    @functools.partial(jax.jit, donate_argnums=0)
    def run(state: Any, x: jax.Array) -> tuple[Any, Any]:
        module = nnx.merge(graph, state)
        return module(x), nnx.state(module)

    def forward(x: jax.Array) -> Any:
        nonlocal state
        output, state = run(state, x)
        nnx.update(model, state)
        return output

    return forward


def pool_padding(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> tuple:
    """(low, high) padding of one axis giving PyTorch's pooling output length: with ceil_mode
    the last window may overhang the high side, but must start inside the input or its padding."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return padding, max(padding, (out - 1) * stride + kernel - size - padding)


def _windows(x: jax.Array, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool) -> tuple:
    """Window, strides and explicit NHWC padding of a 2-d pooling, as PyTorch computes them."""
    kernel = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
    steps = stride if isinstance(stride, tuple) else (stride, stride)
    pads = padding if isinstance(padding, tuple) else (padding, padding)
    spatial = [pool_padding(*axis, ceil_mode) for axis in zip(x.shape[1:3], kernel, steps, pads)]
    return (1, *kernel, 1), (1, *steps, 1), ((0, 0), *spatial, (0, 0))


def max_pool2d(
    x: jax.Array, kernel_size: Any, stride: Any, padding: Any = 0, ceil_mode: bool = False
) -> jax.Array:
    """PyTorch's MaxPool2d on NHWC: padding never wins the max."""
    window, strides, pads = _windows(x, kernel_size, stride, padding, ceil_mode)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)


def avg_pool2d(
    x: jax.Array,
    kernel_size: Any,
    stride: Any,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> jax.Array:
    """PyTorch's AvgPool2d on NHWC, with its divisors: explicit padding counts when
    count_include_pad, the ceil_mode overhang never does."""
    window, strides, pads = _windows(x, kernel_size, stride, padding, ceil_mode)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    if count_include_pad:  # count the explicit padding as cells, not the overhang
        explicit = tuple((low, low) for low, _ in pads)
        ones = jnp.pad(ones, explicit, constant_values=1)
        pads = tuple((0, high - low) for low, high in pads)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pads)
    return total / count


def adaptive_avg_pool2d(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """PyTorch's AdaptiveAvgPool2d on NHWC: bin i spans [floor(i·n/k), ceil((i+1)·n/k))."""

    def bins(size: int, count: int) -> list[tuple[int, int]]:
        return [(i * size // count, math.ceil((i + 1) * size / count)) for i in range(count)]

    rows = [
        jnp.stack(
            [
                jnp.mean(x[:, top:bottom, left:right], axis=(1, 2))
                for left, right in bins(x.shape[2], output_size[1])
            ],
            axis=1,
        )
        for top, bottom in bins(x.shape[1], output_size[0])
    ]
    return jnp.stack(rows, axis=1)


def load_torch_state_dict(model: nnx.Module, state_dict: dict[str, np.ndarray]) -> None:
    """Fill every parameter and BatchNorm statistic of `model` from a PyTorch state_dict.

    Values are numpy arrays, e.g. `{k: v.numpy() for k, v in module.state_dict().items()}`;
    no torch is needed. Names follow the PyTorch model: nnx.Sequential's `layers` level is
    dropped and a `kernel` or `scale` is a `weight` (conv OIHW -> HWIO, linear transposed).
    A missing, unexpected or misshapen entry raises, naming it.
    """
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    flat = nnx.to_flat_state(state)
    variables = {_torch_name(model, path): (path, variable) for path, variable in flat}
    missing = sorted(variables.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - variables.keys())
    if missing or unexpected:
        raise KeyError(f"state_dict does not fit: missing {missing}, unexpected {unexpected}")
    for name, (path, variable) in variables.items():
        value = np.asarray(state_dict[name])
        if path[-1] == "kernel" and name.endswith(".weight"):
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
        if value.shape != variable.shape:
            raise ValueError(f"{name}: expected {variable.shape} (flax layout), got {value.shape}")
        # A copy: on CPU jax may alias a numpy buffer, which torch could later change in place.
        variable.set_value(jnp.array(value, dtype=variable.dtype, copy=True))
    nnx.update(model, state)


def _torch_name(model: nnx.Module, path: tuple) -> str:
    """('layer1', 'layers', 0, 'conv1', 'kernel') -> 'layer1.0.conv1.weight'. Only flax's own
    layers name a weight `kernel` or `scale`: a parameter a node names so keeps its name."""
    owner = model
    for part in path[:-1]:
        owner = owner[part] if isinstance(part, int) else getattr(owner, part)
    parts = [
        str(part)
        for index, part in enumerate(path)
        if not (part == "layers" and index + 1 < len(path) and isinstance(path[index + 1], int))
    ]
    if parts[-1] in ("kernel", "scale") and type(owner).__module__.startswith("flax."):
        parts[-1] = "weight"
    return ".".join(parts)


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """Interleave the channels of `groups` groups (NHWC), in PyTorch's channel order."""
    *spatial, channels = x.shape
    x = x.reshape(*spatial, groups, channels // groups)
    return jnp.swapaxes(x, -1, -2).reshape(*spatial, channels)


def center_crop(x: jax.Array, like: jax.Array) -> jax.Array:
    """The centre of `x` at `like`'s height and width, NHWC (the crop of U-Net's skips)."""
    height, width = like.shape[1:3]
    top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
    return x[:, top : top + height, left : left + width, :]


def center_pad(x: jax.Array, like: jax.Array) -> jax.Array:
    """`x` zero-padded to `like`'s height and width, centred, NHWC; the odd row or column
    goes to the bottom or right (as U-Net ports pad their skips)."""
    height, width = (b - a for a, b in zip(x.shape[1:3], like.shape[1:3]))
    pads = ((height // 2, height - height // 2), (width // 2, width - width // 2))
    return jnp.pad(x, ((0, 0), *pads, (0, 0)))


def attention(qkv: jax.Array, heads: int) -> jax.Array:
    """Multi-head scaled dot-product attention from packed q, k, v: (N, L, 3·D) to (N, L, D)."""
    n, length, packed = qkv.shape
    q, k, v = qkv.reshape(n, length, 3, heads, packed // (3 * heads)).transpose(2, 0, 1, 3, 4)
    return jax.nn.dot_product_attention(q, k, v).reshape(n, length, packed // 3)


def resize(x: jax.Array, size: Any, mode: str, align_corners: bool) -> jax.Array:
    """PyTorch's F.interpolate on NHWC: 'nearest' takes floor(i · n / m); 'bilinear' samples
    pixel centres, or corner to corner with align_corners, one axis after the other."""
    for axis, out in zip((1, 2), size):
        x = _resize_axis(x, axis, int(out), mode, align_corners)
    return x


def _resize_axis(x: jax.Array, axis: int, out: int, mode: str, align_corners: bool) -> jax.Array:
    size = x.shape[axis]
    position = np.arange(out, dtype=np.float64)
    if mode == "nearest":
        return jnp.take(x, np.floor(position * size / out).astype(np.int32), axis=axis)
    if align_corners:
        source = position * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
    else:
        source = np.maximum((position + 0.5) * size / out - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int32), size - 1)
    high = np.minimum(low + 1, size - 1)
    shape = [1] * x.ndim
    shape[axis] = out
    weight = jnp.asarray((source - low).reshape(shape), x.dtype)
    return jnp.take(x, low, axis=axis) * (1 - weight) + jnp.take(x, high, axis=axis) * weight


class ShiftedWindowAttention(nnx.Module):
    """Swin's window attention on NHWC, with torchvision's parameter names: attention within
    window x window patches, cyclically shifted by `shift` first (not where the window covers
    the map), with a learned bias per relative position and head, and -100 added between
    positions that the shift brought together from different regions. A map the window does
    not divide is padded with zeros to whole windows and cropped back, as torchvision does."""

    def __init__(self, dim: int, *, window: int, shift: int, heads: int, rngs: nnx.Rngs) -> None:
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, rngs=rngs)
        table = jax.random.truncated_normal(rngs.params(), -2, 2, ((2 * window - 1) ** 2, heads))
        self.relative_position_bias_table = nnx.Param(table * 0.02)
        # PyTorch keeps the index as a buffer in its state_dict; so does this, as state.
        self.relative_position_index = nnx.BatchStat(jnp.asarray(relative_position_index(window)))

    def __call__(self, x: jax.Array) -> jax.Array:
        w, heads = self.window, self.heads
        unpadded = x.shape[1:3]
        if unpadded[0] % w or unpadded[1] % w:  # zeros to whole windows, bottom and right
            x = jnp.pad(x, ((0, 0), (0, -unpadded[0] % w), (0, -unpadded[1] % w), (0, 0)))
        n, height, width, dim = x.shape
        shifts = [self.shift if w < size else 0 for size in (height, width)]
        x = jnp.roll(x, (-shifts[0], -shifts[1]), axis=(1, 2))
        windows = x.reshape(n, height // w, w, width // w, w, dim).transpose(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, w * w, dim)
        qkv = self.qkv(windows).reshape(len(windows), w * w, 3, heads, dim // heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (N·windows, w², heads, d)
        bias = self.relative_position_bias_table[...][self.relative_position_index[...]]
        bias = bias.reshape(w * w, w * w, heads).transpose(2, 0, 1)[None]  # (1, heads, w², w²)
        if sum(shifts) > 0:  # and the shift mask, the same for every sample
            mask = jnp.asarray(window_mask(height, width, w, shifts))[:, None]
            bias = (bias + mask).reshape(1, -1, heads, w * w, w * w)
            bias = jnp.broadcast_to(bias, (n, *bias.shape[1:])).reshape(-1, heads, w * w, w * w)
        x = jax.nn.dot_product_attention(q, k, v, bias=bias.astype(q.dtype))
        x = self.proj(x.reshape(len(windows), w * w, dim))
        x = x.reshape(n, height // w, width // w, w, w, dim).transpose(0, 1, 3, 2, 4, 5)
        x = jnp.roll(x.reshape(n, height, width, dim), (shifts[0], shifts[1]), axis=(1, 2))
        return x[:, : unpadded[0], : unpadded[1]]


def relative_position_index(window: int) -> np.ndarray:
    """For each pair of positions in a window, the row of their offset in the bias table."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij"))
    coords = coords.reshape(2, -1)
    offsets = coords[:, :, None] - coords[:, None, :] + window - 1
    return (offsets[0] * (2 * window - 1) + offsets[1]).reshape(-1)


def window_mask(height: int, width: int, window: int, shifts: list[int]) -> np.ndarray:
    """-100 between positions of a window that come from different regions of the shifted
    map, 0 elsewhere: (windows, window², window²)."""
    regions = np.zeros((height, width))
    bounds = [
        ((0, size - window), (size - window, size - shift), (size - shift, size))
        for size, shift in zip((height, width), shifts)
    ]
    for index, ((top, bottom), (left, right)) in enumerate(
        (rows, cols) for rows in bounds[0] for cols in bounds[1]
    ):
        regions[top:bottom, left:right] = index
    regions = regions.reshape(height // window, window, width // window, window)
    regions = regions.transpose(0, 2, 1, 3).reshape(-1, window * window)
    return (regions[:, None, :] != regions[:, :, None]) * -100.0


def fans(kernel: jax.Array) -> tuple[int, int]:
    """A kernel's fan-in and fan-out, (*window, in, out), as torch counts its weight's."""
    receptive = math.prod(kernel.shape[:-2])
    return kernel.shape[-2] * receptive, kernel.shape[-1] * receptive


def drawn_later(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """A conv or linear layer's kernel until init_weights draws it as torch would (an
    inference export has none: its kernels come from a converted checkpoint): NaN, so that
    one left undrawn shows, and made in numpy, since an eager jax draw compiles once per
    shape, seconds each on a CPU."""
    return jnp.asarray(np.full(shape, np.nan, dtype))


def numpy_generator(rngs: nnx.Rngs) -> np.random.Generator:
    """A numpy generator seeded from `rngs`: initial values drawn in numpy compile nothing
    (an eager jax draw compiles once per shape)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(rngs.params())))


def normal(generator: np.random.Generator, shape: tuple[int, ...], std: float) -> jax.Array:
    """N(0, std²), as torch's nn.init.normal_."""
    return jnp.asarray(std * generator.standard_normal(shape, np.float32))


def trunc_normal(generator: np.random.Generator, shape: tuple[int, ...], std: float) -> jax.Array:
    """N(0, std²) cut at ±2 (absolute bounds, as torch's nn.init.trunc_normal_)."""
    values = std * generator.standard_normal(shape, np.float32)
    outside = np.abs(values) > 2
    while outside.any():  # drawn again, as often as it takes
        values[outside] = std * generator.standard_normal(int(outside.sum()), np.float32)
        outside = np.abs(values) > 2
    return jnp.asarray(values)


def uniform(generator: np.random.Generator, shape: tuple[int, ...], bound: float) -> jax.Array:
    """U(-bound, bound), as torch's nn.init.uniform_(tensor, -bound, bound)."""
    return jnp.asarray(generator.uniform(-bound, bound, shape).astype(np.float32))


def constant(shape: tuple[int, ...], value: float) -> jax.Array:
    """Every value `value`, as torch's nn.init.constant_ (zeros_, ones_)."""
    return jnp.asarray(np.full(shape, value, np.float32))


def grid_anchors(
    image: jax.Array,
    levels: list[jax.Array],
    size: int,
    scales: int,
    aspect_ratios: tuple[float, ...],
) -> jax.Array:
    """Anchor boxes (x1, y1, x2, y2) at every position of every level, each position's in
    turn, as torchvision's AnchorGenerator lays them: on level k, sides size·2^k·2^(j/scales)
    (truncated) in each aspect ratio (height / width), rounded about the level's grid of
    stride image // level. (N, rows, 4), made with numpy from the shapes alone: a constant
    under jit."""
    height, width = image.shape[1:3]
    heights = np.sqrt(np.asarray(aspect_ratios, np.float32))
    boxes = []
    for index, level in enumerate(levels):
        sides = [int(size * 2**index * 2 ** (step / scales)) for step in range(scales)]
        sides = np.asarray(sides, np.float32)
        box_widths = ((1 / heights)[:, None] * sides[None, :]).reshape(-1)
        box_heights = (heights[:, None] * sides[None, :]).reshape(-1)
        cell = np.round(np.stack([-box_widths, -box_heights, box_widths, box_heights], 1) / 2)
        rows, cols = level.shape[1:3]
        y, x = np.meshgrid(
            np.arange(rows) * (height // rows), np.arange(cols) * (width // cols), indexing="ij"
        )
        shifts = np.stack([x, y, x, y], axis=-1).reshape(-1, 1, 4)
        boxes.append((shifts + cell).reshape(-1, 4).astype(np.float32))
    anchors = jnp.asarray(np.concatenate(boxes))
    return jnp.broadcast_to(anchors, (image.shape[0], *anchors.shape))


def default_boxes(
    image: jax.Array,
    levels: list[jax.Array],
    aspect_ratios: tuple[tuple[float, ...], ...],
    scales: tuple[float, ...] | None,
    min_ratio: float,
    max_ratio: float,
    steps: tuple[float, ...] | None,
    clip: bool,
) -> jax.Array:
    """SSD's default boxes (x1, y1, x2, y2) at every position of every level, each
    position's in turn, as torchvision's DefaultBoxGenerator lays them: on level k, squares
    of sides s_k and √(s_k·s_k+1), then for each aspect ratio r a box s_k·√r wide and s_k/√r
    high and its transpose (sides as fractions of the image, clipped to 1 if `clip`),
    centred on the level's grid (every `steps[k]` pixels, or the map's own grid).
    (N, rows, 4), made with numpy in float32 from the shapes alone: a constant under jit."""
    height, width = image.shape[1:3]
    if scales is None:
        scales = default_scales(len(levels), min_ratio, max_ratio)
    boxes = []
    for index, (level, ratios) in enumerate(zip(levels, aspect_ratios)):
        side, between = scales[index], math.sqrt(scales[index] * scales[index + 1])
        sides = [[side, side], [between, between]]
        for ratio in ratios:
            wide, high = side * math.sqrt(ratio), side / math.sqrt(ratio)
            sides += [[wide, high], [high, wide]]
        sides = np.asarray(sides, np.float32)
        sides = np.clip(sides, 0, 1) if clip else sides
        rows, cols = level.shape[1:3]
        grid = (width / steps[index], height / steps[index]) if steps else (cols, rows)
        x = (np.arange(cols, dtype=np.float32) + np.float32(0.5)) / np.float32(grid[0])
        y = (np.arange(rows, dtype=np.float32) + np.float32(0.5)) / np.float32(grid[1])
        y, x = np.meshgrid(y, x, indexing="ij")
        centres = np.stack([x.reshape(-1), y.reshape(-1)], axis=-1).repeat(len(sides), axis=0)
        sides = np.tile(sides, (rows * cols, 1))
        half = np.float32(0.5) * sides
        boxes.append(np.concatenate([centres - half, centres + half], axis=1))
    scale = np.asarray([width, height, width, height], np.float32)
    boxes = jnp.asarray(np.concatenate(boxes) * scale)
    return jnp.broadcast_to(boxes, (image.shape[0], *boxes.shape))


def default_scales(levels: int, min_ratio: float, max_ratio: float) -> list[float]:
    """SSD's box scales when none are given: even steps from min_ratio to max_ratio over the
    levels, then 1 (computed as torchvision does, to the last bit)."""
    if levels == 1:
        return [min_ratio, max_ratio]
    steps = [min_ratio + (max_ratio - min_ratio) * k / (levels - 1.0) for k in range(levels)]
    return [*steps, 1.0]


def decode_boxes(
    deltas: jax.Array, anchors: jax.Array, weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
) -> jax.Array:
    """Boxes from their anchors' deltas (dx, dy, dw, dh) over `weights`, as torchvision's
    BoxCoder decodes them: the centre moved by (dx, dy) anchor sizes, the sides scaled by
    exp(dw), exp(dh) (dw, dh clipped at log(1000 / 16))."""
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    centre_x, centre_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    deltas = deltas / jnp.asarray(weights, deltas.dtype)
    dx, dy, dw, dh = (deltas[:, axis] for axis in range(4))
    limit = math.log(1000.0 / 16)
    x, y = dx * widths + centre_x, dy * heights + centre_y
    half_w = 0.5 * (jnp.exp(jnp.minimum(dw, limit)) * widths)
    half_h = 0.5 * (jnp.exp(jnp.minimum(dh, limit)) * heights)
    return jnp.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=-1)


def clip_boxes(boxes: jax.Array, height: int, width: int) -> jax.Array:
    """Boxes (x1, y1, x2, y2) clipped to a height x width image."""
    return jnp.clip(boxes, 0, jnp.asarray([width, height, width, height], boxes.dtype))


def class_nms(
    boxes: jax.Array, scores: jax.Array, labels: jax.Array, valid: jax.Array, iou_thresh: float
) -> tuple[jax.Array, jax.Array]:
    """Greedy non-maximum suppression within each class over a fixed number of candidates
    (`valid` ones take part): the candidates best score first, and which of them are kept."""
    order = jnp.argsort(-scores, stable=True)
    boxes, labels, valid = boxes[order], labels[order], valid[order]
    overlaps = box_iou(boxes, boxes) > iou_thresh
    overlaps &= labels[:, None] == labels[None, :]
    later = jnp.arange(len(order))

    def suppress(index: int, keep: jax.Array) -> jax.Array:
        return keep & ~(keep[index] & overlaps[index] & (later > index))

    return order, jax.lax.fori_loop(0, len(order), suppress, valid)


def detection_rows(
    boxes: jax.Array, scores: jax.Array, labels: jax.Array, keep: jax.Array, limit: int
) -> jax.Array:
    """The kept candidates, the `limit` best as (limit, 6) rows of x1, y1, x2, y2, score,
    label (equal scores in index order); past the detections, zeros with label -1."""
    ranked = jnp.argsort(jnp.where(keep, -scores, jnp.inf), stable=True)[:limit]
    rows = [boxes[ranked], scores[ranked, None], labels[ranked, None].astype(boxes.dtype)]
    empty = jnp.zeros((limit, 6), boxes.dtype).at[:, 5].set(-1)
    rows = jnp.where(keep[ranked, None], jnp.concatenate(rows, axis=1), empty[: len(ranked)])
    return empty.at[: len(ranked)].set(rows)


def select_detections(
    image: jax.Array,
    logits: jax.Array,
    deltas: jax.Array,
    anchors: jax.Array,
    levels: list[jax.Array],
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
) -> jax.Array:
    """RetinaNet's detections, as torchvision selects them, in fixed sizes for jit: on each
    level the `candidates` best class scores (sigmoid) above `score_thresh`, their boxes
    decoded from the anchors and clipped to the image; then NMS within each class and the
    `limit` best. (N, limit, 6) rows of x1, y1, x2, y2, score, label, best first; past an
    image's detections, zeros with label -1."""
    height, width = image.shape[1:3]
    positions = [level.shape[1] * level.shape[2] for level in levels]
    ends = np.cumsum([count * (anchors.shape[1] // sum(positions)) for count in positions])
    classes = logits.shape[-1]

    def one_image(logits: jax.Array, deltas: jax.Array, anchors: jax.Array) -> jax.Array:
        boxes, scores, labels = [], [], []
        for start, end in zip([0, *ends[:-1]], ends):
            level_scores = jax.nn.sigmoid(logits[start:end]).reshape(-1)
            level_scores = jnp.where(level_scores > score_thresh, level_scores, -1.0)
            best, kept = jax.lax.top_k(level_scores, min(candidates, level_scores.size))
            rows = start + kept // classes
            boxes.append(clip_boxes(decode_boxes(deltas[rows], anchors[rows]), height, width))
            scores.append(best)
            labels.append(kept % classes)
        boxes, scores, labels = (jnp.concatenate(parts) for parts in (boxes, scores, labels))
        order, keep = class_nms(boxes, scores, labels, scores > score_thresh, iou_thresh)
        return detection_rows(boxes[order], scores[order], labels[order], keep, limit)

    return jax.vmap(one_image)(logits, deltas, anchors)


def softmax_detections(
    image: jax.Array,
    logits: jax.Array,
    deltas: jax.Array,
    boxes: jax.Array,
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
    weights: tuple[float, ...],
) -> jax.Array:
    """SSD's detections, as torchvision selects them, in fixed sizes for jit: the boxes
    decoded from their deltas (over `weights`) and clipped to the image; for each class but
    the background (0) the `candidates` best scores (softmax) above `score_thresh`; then NMS
    within each class and the `limit` best. (N, limit, 6) rows of x1, y1, x2, y2, score,
    label, best first; past an image's detections, zeros with label -1."""
    height, width = image.shape[1:3]

    def one_image(logits: jax.Array, deltas: jax.Array, boxes: jax.Array) -> jax.Array:
        decoded = clip_boxes(decode_boxes(deltas, boxes, weights), height, width)
        scores = jax.nn.softmax(logits, axis=-1)
        classes = range(1, logits.shape[-1])  # all but the background
        return class_detections(
            decoded, scores, classes, score_thresh, candidates, iou_thresh, limit
        )

    return jax.vmap(one_image)(logits, deltas, boxes)


def class_detections(
    boxes: jax.Array,
    scores: jax.Array,
    classes: range,
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
) -> jax.Array:
    """An image's detections from its boxes (rows, 4), or each row's per class (rows,
    classes, 4), and their scores per class (rows, classes), in fixed sizes for jit: for
    each of `classes` the `candidates` best scores above `score_thresh`, NMS'd within the
    class, the `limit` best as detection_rows gives them."""
    scores = scores[:, classes.start : classes.stop].T  # (classes, rows)
    scores = jnp.where(scores > score_thresh, scores, -1.0)
    best, rows = jax.lax.top_k(scores, min(candidates, scores.shape[1]))
    labels = jnp.broadcast_to(np.arange(classes.start, classes.stop)[:, None], best.shape)
    if boxes.ndim == 2:
        chosen = boxes[rows]  # (classes, candidates, 4)
    else:  # each class's own boxes
        own = boxes[:, classes.start : classes.stop].transpose(1, 0, 2)
        chosen = jnp.take_along_axis(own, rows[..., None], axis=1)
    nms = jax.vmap(class_nms, in_axes=(0, 0, 0, 0, None))  # each class on its own
    order, keep = nms(chosen, best, labels, best > score_thresh, iou_thresh)
    best = jnp.take_along_axis(best, order, axis=1)
    chosen = jnp.take_along_axis(chosen, order[..., None], axis=1)
    return detection_rows(
        chosen.reshape(-1, 4), best.reshape(-1), labels.reshape(-1), keep.reshape(-1), limit
    )


def yolo_detections(
    image: jax.Array,
    maps: list[jax.Array],
    anchors: tuple[tuple[float, ...], ...],
    score_thresh: float,
    candidates: int,
    iou_thresh: float,
    limit: int,
) -> jax.Array:
    """YOLOv3's detections, as darknet's yolo layers find them, in fixed sizes for jit: on
    each map, every cell's anchors (w, h pairs in input pixels) predict a box, centred at the
    cell plus sigmoid(tx, ty) and sized exp(tw, th) times the anchor, an objectness and
    class scores (sigmoids), a class's score their product; then for each class the
    `candidates` best above `score_thresh`, NMS within each class and the `limit` best.
    (N, limit, 6) rows of x1, y1, x2, y2, score, label, best first; past an image's
    detections, zeros with label -1."""
    height, width = image.shape[1:3]
    boxes, scores = [], []
    for head, pairs in zip(maps, anchors):
        head, box = yolo_entries(head, pairs, height, width)
        count = len(head)
        boxes.append(box.reshape(count, -1, 4))
        score = jax.nn.sigmoid(head[..., 4:5]) * jax.nn.sigmoid(head[..., 5:])
        scores.append(score.reshape(count, -1, score.shape[-1]))
    boxes, scores = jnp.concatenate(boxes, axis=1), jnp.concatenate(scores, axis=1)
    classes = range(scores.shape[-1])

    def one_image(boxes: jax.Array, scores: jax.Array) -> jax.Array:
        return class_detections(boxes, scores, classes, score_thresh, candidates, iou_thresh, limit)

    return jax.vmap(one_image)(boxes, scores)


def region_proposals(
    image: jax.Array,
    objectness: jax.Array,
    deltas: jax.Array,
    anchors: jax.Array,
    levels: list[jax.Array],
    candidates: int,
    iou_thresh: float,
    limit: int,
    score_thresh: float,
    min_size: float,
) -> jax.Array:
    """A region proposal network's proposals, as torchvision's RPN filters them, in fixed
    sizes for jit: on each level the `candidates` best objectness logits, their boxes
    decoded from the anchors and clipped to the image; those under `min_size` a side or
    `score_thresh` (sigmoid) dropped; NMS within each level and the `limit` best. (N, limit,
    4) boxes, best first; past an image's proposals, zeros (boxes of no size, which pool
    nothing a detection keeps)."""
    height, width = image.shape[1:3]
    positions = [level.shape[1] * level.shape[2] for level in levels]
    ends = np.cumsum([count * (anchors.shape[1] // sum(positions)) for count in positions])
    objectness, deltas = jax.lax.stop_gradient((objectness, deltas))  # none through boxes

    def one_image(logits: jax.Array, deltas: jax.Array, anchors: jax.Array) -> jax.Array:
        rows, labels = [], []
        for index, (start, end) in enumerate(zip([0, *ends[:-1]], ends)):
            _, kept = jax.lax.top_k(logits[start:end], min(candidates, int(end - start)))
            rows.append(start + kept)
            labels.append(jnp.full(kept.shape, index))
        rows, labels = jnp.concatenate(rows), jnp.concatenate(labels)
        boxes = clip_boxes(decode_boxes(deltas[rows], anchors[rows]), height, width)
        scores = jax.nn.sigmoid(logits[rows])
        sides = boxes[:, 2:] - boxes[:, :2]
        valid = jnp.all(sides >= min_size, axis=1) & (scores >= score_thresh)
        order, keep = class_nms(boxes, scores, labels, valid, iou_thresh)
        ranked = jnp.argsort(~keep, stable=True)[:limit]  # the kept, best first
        kept_boxes = jnp.where(keep[ranked, None], boxes[order[ranked]], 0.0)
        return jnp.zeros((limit, 4), boxes.dtype).at[: len(ranked)].set(kept_boxes)

    return jax.vmap(one_image)(objectness[..., 0], deltas, anchors)


def roi_align(
    image: jax.Array,
    boxes: jax.Array,
    levels: list[jax.Array],
    size: int,
    sampling_ratio: int,
    canonical_scale: float,
    canonical_level: int,
) -> jax.Array:
    """Each box's features pooled to size x size, as torchvision's MultiScaleRoIAlign, in
    fixed sizes for jit: a box of side s (the root of its area) pools from level
    floor(canonical_level + log2(s / canonical_scale)) of those given (level k has stride
    2^k, read from its size), by RoIAlign. (N·R, size, size, C), the boxes (N, R, 4, or
    more columns after them) of each image in turn."""
    scales = [2.0 ** round(math.log2(level.shape[1] / image.shape[1])) for level in levels]
    first, last = -math.log2(scales[0]), -math.log2(scales[-1])
    rois = boxes[..., :4].reshape(-1, 4)  # any columns after the box are not read
    owners = jnp.repeat(jnp.arange(boxes.shape[0]), boxes.shape[1])
    sides = jnp.sqrt((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
    chosen = jnp.floor(canonical_level + jnp.log2(sides / canonical_scale) + 1e-6)
    chosen = jnp.clip(chosen, first, last) - first
    pooled = jnp.zeros((len(rois), size, size, levels[0].shape[-1]), levels[0].dtype)
    for index, (level, scale) in enumerate(zip(levels, scales)):
        aligned = align_boxes(level, owners, rois * scale, size, sampling_ratio)
        pooled = jnp.where((chosen == index)[:, None, None, None], aligned, pooled)
    return pooled


def align_boxes(
    level: jax.Array, owners: jax.Array, rois: jax.Array, size: int, sampling_ratio: int
) -> jax.Array:
    """RoIAlign on one map, as torchvision's roi_align (aligned=False): each box (in the
    map's pixels, of image `owners[i]`, at least 1 a side) split into size x size bins, each
    the mean of sampling_ratio² bilinear samples spread evenly over it. (rows, size, size,
    C)."""
    height, width = level.shape[1:3]
    start = rois[:, :2]
    bins = jnp.maximum(rois[:, 2:] - rois[:, :2], 1.0) / size  # (x, y)
    x_points = bin_points(start[:, 0], bins[:, 0], size, sampling_ratio, sampling_ratio)
    y_points = bin_points(start[:, 1], bins[:, 1], size, sampling_ratio, sampling_ratio)
    x_low, x_high, x_weights = bilinear_taps(x_points, width)
    y_low, y_high, y_weights = bilinear_taps(y_points, height)
    images = owners[:, None, None]
    values = 0
    for y_taps, y_weight in ((y_low, y_weights[..., 0]), (y_high, y_weights[..., 1])):
        for x_taps, x_weight in ((x_low, x_weights[..., 0]), (x_high, x_weights[..., 1])):
            taps = level[images, y_taps[:, :, None], x_taps[:, None, :]]  # (rows, y, x, C)
            values = values + (y_weight[:, :, None] * x_weight[:, None, :])[..., None] * taps
    grid = values.reshape(len(rois), size, sampling_ratio, size, sampling_ratio, -1)
    return grid.sum(axis=(2, 4)) / sampling_ratio**2


def bin_points(starts: jax.Array, bins: jax.Array, size: int, ratios: Any, most: int) -> jax.Array:
    """Where RoIAlign samples along one axis of each box (its start and bin length): sample
    i of bin p at start + p·bin + (i + 0.5)·bin / ratio, for i below `most` (the ratio, or
    more, per box, for samples that align_weights drops). (rows, size·most)."""
    steps = np.repeat(np.arange(size), most)
    within = np.tile(np.arange(most), size) + 0.5
    return starts[:, None] + steps * bins[:, None] + within * bins[:, None] / ratios


def bilinear_taps(points: jax.Array, length: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Where bilinear sampling at `points` along an axis of `length` pixels reads, as
    RoIAlign does: the pixel below and above each and their weights (points, 2); a point
    beyond -1 or `length` weighs nothing, one under 0 reads pixel 0, one past the last
    pixel reads the last."""
    outside = (points < -1.0) | (points > length)
    points = jnp.maximum(points, 0)
    low = jnp.floor(points)
    edge = low >= length - 1
    low = jnp.where(edge, length - 1, low)
    points = jnp.where(edge, low, points)
    high = jnp.where(edge, low, low + 1)
    fraction = points - low
    weights = jnp.stack([1 - fraction, fraction], axis=-1) * ~outside[..., None]
    return low.astype(jnp.int32), high.astype(jnp.int32), weights


def roi_detections(
    image: jax.Array,
    logits: jax.Array,
    deltas: jax.Array,
    proposals: jax.Array,
    score_thresh: float,
    iou_thresh: float,
    limit: int,
    weights: tuple[float, ...],
    min_size: float,
) -> jax.Array:
    """Faster R-CNN's detections, as torchvision's RoIHeads selects them, in fixed sizes for
    jit: each proposal's box for each class decoded from its deltas (over `weights`) and
    clipped to the image; for each class but the background (0) the boxes whose score
    (softmax) is above `score_thresh` and sides reach `min_size`; NMS within each class and
    the `limit` best. (N, limit, 6) rows of x1, y1, x2, y2, score, label, best first; past
    an image's detections, zeros with label -1."""
    height, width = image.shape[1:3]
    count, classes = proposals.shape[1], logits.shape[-1]

    def one_image(logits: jax.Array, deltas: jax.Array, proposals: jax.Array) -> jax.Array:
        anchors = jnp.repeat(proposals, classes, axis=0)
        boxes = decode_boxes(deltas.reshape(-1, 4), anchors, weights)
        boxes = clip_boxes(boxes, height, width).reshape(count, classes, 4)
        large = jnp.all(boxes[..., 2:] - boxes[..., :2] >= min_size, axis=-1)
        scores = jnp.where(large, jax.nn.softmax(logits, axis=-1), 0.0)  # small: nothing
        return class_detections(
            boxes, scores, range(1, classes), score_thresh, count, iou_thresh, limit
        )

    shaped = (part.reshape(len(proposals), count, -1) for part in (logits, deltas))
    return jax.vmap(one_image)(*shaped, proposals)


def paste_masks(image: jax.Array, logits: jax.Array, detections: jax.Array) -> jax.Array:
    """Mask R-CNN's masks, as torchvision pastes them (paste_masks_in_image): each
    detection's mask, the sigmoid of its label's logits (M x M), padded by a pixel and
    resized bilinearly to its box, enlarged alike and cut to whole pixels, then put into the
    image there. (N, H, W, R) probabilities, an image per detection in the channels (torch's
    (N, R, H, W) channels-last); zeros past an image's detections."""
    height, width = image.shape[1:3]
    labels = detections[..., 5].reshape(-1).astype(jnp.int32)
    chosen = jnp.take_along_axis(logits, jnp.maximum(labels, 0)[:, None, None, None], axis=3)
    masks = jnp.pad(jax.nn.sigmoid(chosen[..., 0]), ((0, 0), (1, 1), (1, 1)))
    masks = masks * (labels >= 0)[:, None, None]
    size = masks.shape[-1]  # M + 2
    boxes = detections[..., :4].reshape(-1, 4)
    centres, halves = (boxes[:, :2] + boxes[:, 2:]) * 0.5, (boxes[:, 2:] - boxes[:, :2]) * 0.5
    halves = halves * (jnp.float32(size) / (size - 2))
    corners = jnp.concatenate([centres - halves, centres + halves], axis=1).astype(jnp.int32)
    across = resize_taps(corners[:, 0], corners[:, 2], size, width)  # (rows, W) each
    down = resize_taps(corners[:, 1], corners[:, 3], size, height)  # (rows, H)
    rows = sum(  # (rows, M + 2, W): each mask row resized across
        jax.vmap(lambda mask, taps: mask[:, taps])(masks, taps) * weight[:, None]
        for taps, weight in zip(across[:2], across[2:])
    )
    pasted = sum(
        jax.vmap(lambda mask, taps: mask[taps])(rows, taps) * weight[:, :, None]
        for taps, weight in zip(down[:2], down[2:])
    )
    return jnp.moveaxis(pasted.reshape(*detections.shape[:2], height, width), 1, -1)


def resize_taps(start: jax.Array, end: jax.Array, size: int, length: int) -> tuple[jax.Array, ...]:
    """For each box (from pixel `start` to `end` along an axis) and each pixel of the image
    along it, where bilinear resizing (align_corners=False, torch's F.interpolate) of `size`
    values to the box's pixels (at least 1) reads for that pixel: the value below and above
    and their weights, which are zero for a pixel outside the box. (rows, length) each."""
    offsets = jnp.arange(length) - start[:, None]
    inside = (offsets >= 0) & (offsets <= (end - start)[:, None])
    step = size / jnp.maximum(end - start + 1, 1).astype(jnp.float32)
    source = jnp.maximum((offsets + 0.5) * step[:, None] - 0.5, 0)
    low = jnp.minimum(source.astype(jnp.int32), size - 1)
    high = jnp.minimum(low + 1, size - 1)
    fraction = (source - low) * inside
    return low, high, (1 - fraction) * inside, fraction


def yolo_entries(
    head: jax.Array, pairs: tuple[float, ...], height: int, width: int
) -> tuple[jax.Array, jax.Array]:
    """A yolo head's map (N, rows, cols, anchors·(5 + classes), channels anchor by anchor)
    as each anchor's entries (N, anchors, rows, cols, 5 + classes), and the boxes they
    predict (x1, y1, x2, y2 in input pixels): centred at the cell plus sigmoid(tx, ty),
    sized exp(tw, th) times the anchor (`pairs` of w, h)."""
    count, rows, cols, _ = head.shape
    sizes = np.asarray(pairs, np.float32).reshape(-1, 1, 1, 2)  # (anchors, 1, 1, w h)
    head = head.reshape(count, rows, cols, len(sizes), -1).transpose(0, 3, 1, 2, 4)
    y, x = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    centres = np.stack([x, y], axis=-1).astype(np.float32) + jax.nn.sigmoid(head[..., :2])
    centres = centres * np.asarray([width / cols, height / rows], np.float32)
    halves = jnp.exp(head[..., 2:4]) * sizes / 2
    return head, jnp.concatenate([centres - halves, centres + halves], axis=-1)


def yolo_loss(
    image: jax.Array,
    maps: list[jax.Array],
    targets: dict[str, jax.Array],
    anchors: tuple[tuple[float, ...], ...],
    ignore_thresh: float,
) -> jax.Array:
    """YOLOv3's training loss, whose gradient on each map is the delta of darknet's yolo
    layers (forward_yolo_layer), summed over the images, in fixed sizes for jit. A target
    box is the charge of the anchor, of all the maps', whose shape overlaps its own best
    (the first of a tie), in the cell of its centre: binary cross entropy of its tx, ty
    against the centre's place in the cell and half the squared error of tw, th against
    log(side / anchor), both times 2 less the box's share of the image; its objectness
    against 1 and its class scores against its boxes' classes (binary cross entropy). Every
    other anchor's objectness counts against 0, unless its box overlaps a target box by more
    than `ignore_thresh` (IoU). Of boxes in one anchor's cell, the last one's box counts."""
    height, width = image.shape[1:3]
    sizes = jnp.asarray([size for pairs in anchors for size in pairs], jnp.float32).reshape(-1, 2)
    boxes, valid = targets["boxes"].astype(jnp.float32), targets["labels"] >= 0
    sides = boxes[..., 2:] - boxes[..., :2]
    centred = jnp.concatenate([-sides / 2, sides / 2], axis=-1)  # shapes only, as darknet's
    anchor_boxes = jnp.concatenate([-sizes / 2, sizes / 2], axis=1)
    best = jnp.argmax(jax.vmap(box_iou, in_axes=(0, None))(centred, anchor_boxes), axis=-1)
    sides = jnp.where(valid[..., None], sides, sizes[best])  # padding: no log of 0
    shares = (boxes[..., :2] + boxes[..., 2:]) / 2 / np.asarray([width, height], np.float32)
    scale = 2 - jnp.prod(sides / np.asarray([width, height], np.float32), axis=-1)
    total, start = 0.0, 0
    for head, pairs in zip(maps, anchors):
        entries, predicted = yolo_entries(head, pairs, height, width)
        count, rows, cols = entries.shape[1:4]
        centres = shares * np.asarray([cols, rows], np.float32)  # in cells, as darknet's x * w
        cells = jnp.minimum(jnp.maximum(jnp.floor(centres), 0), np.asarray([cols - 1, rows - 1]))
        flat = ((best - start) * rows + cells[..., 1].astype(jnp.int32)) * cols
        flat = flat + cells[..., 0].astype(jnp.int32)
        flat = jnp.where(valid & (best >= start) & (best < start + count), flat, -1)
        wanted = jnp.concatenate([centres - cells, jnp.log(sides / sizes[best])], axis=-1)
        predicted = jax.lax.stop_gradient(predicted.reshape(len(boxes), -1, 4))
        overlaps = jnp.where(valid[:, None], jax.vmap(box_iou)(predicted, boxes), 0.0)
        entries = entries.reshape(len(boxes), -1, entries.shape[-1])
        charge = (flat, targets["labels"], wanted, scale)
        one_image = jax.vmap(yolo_map_loss, in_axes=(0, 0, 0, None))
        total = total + one_image(entries, overlaps, charge, ignore_thresh).sum()
        start += count
    return total


def yolo_map_loss(
    entries: jax.Array, overlaps: jax.Array, charge: tuple[jax.Array, ...], ignore_thresh: float
) -> jax.Array:
    """yolo_loss on one image's map: its anchors' entries (anchor cells, 5 + classes), their
    boxes' IoU with the target boxes, and the charge of each box: its anchor cell (-1 off
    the map), label, wanted tx, ty, tw, th and the scale of their losses."""
    flat, labels, wanted, scale = charge
    charged = flat >= 0
    order = jnp.arange(len(flat))
    later = (flat[:, None] == flat[None]) & (order[:, None] < order[None])
    last = charged & ~later.any(axis=1)
    spots = jnp.where(charged, flat, len(entries))  # past the end: dropped
    nearest = jnp.max(overlaps, axis=1, initial=0.0)
    truth = jnp.zeros(len(entries)).at[spots].set(1.0, mode="drop")
    weight = jnp.where(nearest <= ignore_thresh, 1.0, 0.0).at[spots].set(1.0, mode="drop")
    objectness = jnp.sum(binary_cross_entropy(entries[:, 4], truth) * weight)
    classes = jnp.zeros_like(entries[:, 5:]).at[spots, jnp.maximum(labels, 0)].set(1.0, mode="drop")
    chosen = entries[jnp.maximum(flat, 0)]
    places = binary_cross_entropy(chosen[:, :2], wanted[:, :2])
    shapes = (wanted[:, 2:] - chosen[:, 2:4]) ** 2 / 2
    scores = binary_cross_entropy(chosen[:, 5:], classes[jnp.maximum(flat, 0)])
    boxes = scale * jnp.sum(places + shapes, axis=1) + jnp.sum(scores, axis=1)
    return objectness + jnp.sum(jnp.where(last, boxes, 0.0))


def box_iou(boxes: jax.Array, others: jax.Array) -> jax.Array:
    """Intersection over union of every box (x1, y1, x2, y2) with every other: (len, len)."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    corners = jnp.maximum(boxes[:, None, :2], others[None, :, :2])
    far_corners = jnp.minimum(boxes[:, None, 2:], others[None, :, 2:])
    sides = jnp.maximum(far_corners - corners, 0)
    inter = sides[..., 0] * sides[..., 1]
    return inter / (areas[:, None] + other_areas[None, :] - inter)


def match_anchors(
    anchors: jax.Array,
    targets: dict[str, jax.Array],
    fg_iou_thresh: float,
    bg_iou_thresh: float,
    low_quality: str,
) -> jax.Array:
    """Each anchor's target box, as torchvision's Matcher: the index of the box it overlaps
    most where that IoU reaches `fg_iou_thresh`, -1 below `bg_iou_thresh` (background), -2
    in between (ignored). Low-quality matches: "keep", every box's best anchors (all ties)
    keep their own best box; "force" (SSDMatcher), every box's best anchor is matched to
    it (the last box where two share one); "off", neither. `targets`: "boxes" (N, boxes, 4)
    as x1, y1, x2, y2 and "labels" (N, boxes), padded with label -1 past an image's boxes.
    (N, rows)"""

    def one_image(anchors: jax.Array, boxes: jax.Array, labels: jax.Array) -> jax.Array:
        present = labels >= 0
        overlaps = jnp.where(present[:, None], box_iou(boxes, anchors), -1.0)
        best, found = overlaps.max(axis=0), overlaps.argmax(axis=0)
        matches = jnp.where(best < bg_iou_thresh, -1, jnp.where(best < fg_iou_thresh, -2, found))
        if low_quality == "keep":
            closest = (overlaps == overlaps.max(axis=1, keepdims=True)) & present[:, None]
            matches = jnp.where(closest.any(axis=0), found, matches)
        elif low_quality == "force":
            anchor = jnp.arange(overlaps.shape[1])
            forced = (overlaps.argmax(axis=1)[:, None] == anchor) & present[:, None]
            box = jnp.max(jnp.where(forced, jnp.arange(len(boxes))[:, None], -1), axis=0)
            matches = jnp.where(box >= 0, box, matches)
        return jnp.where(present.any(), matches, -1)

    return jax.vmap(one_image)(anchors, targets["boxes"], targets["labels"])


def focal_loss(
    logits: jax.Array,
    matched: jax.Array,
    targets: dict[str, jax.Array],
    alpha: float,
    gamma: float,
) -> jax.Array:
    """RetinaNet's classification loss, as torchvision computes it: sigmoid focal loss
    against each foreground anchor's box label (one-hot), over every anchor not ignored,
    summed per image over its foreground count, averaged over the images."""

    def one_image(logits: jax.Array, matches: jax.Array, labels: jax.Array) -> jax.Array:
        foreground = matches >= 0
        label = labels[jnp.maximum(matches, 0)]
        truth = jax.nn.one_hot(label, logits.shape[-1]) * foreground[:, None]
        probabilities = jax.nn.sigmoid(logits)
        cross_entropy = binary_cross_entropy(logits, truth)
        right = probabilities * truth + (1 - probabilities) * (1 - truth)
        weights = alpha * truth + (1 - alpha) * (1 - truth)
        loss = weights * cross_entropy * (1 - right) ** gamma
        loss = jnp.sum(jnp.where((matches != -2)[:, None], loss, 0.0))
        return loss / jnp.maximum(foreground.sum(), 1)

    return jnp.mean(jax.vmap(one_image)(logits, matched, targets["labels"]))


def encode_boxes(
    boxes: jax.Array, anchors: jax.Array, weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
) -> jax.Array:
    """The deltas (dx, dy, dw, dh) that move each anchor onto its box, times `weights`, as
    torchvision's BoxCoder encodes them (decode_boxes undoes it)."""
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    centre_x, centre_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    box_widths, box_heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    box_x, box_y = boxes[:, 0] + 0.5 * box_widths, boxes[:, 1] + 0.5 * box_heights
    wx, wy, ww, wh = weights
    return jnp.stack(
        [
            wx * (box_x - centre_x) / widths,
            wy * (box_y - centre_y) / heights,
            ww * jnp.log(box_widths / widths),
            wh * jnp.log(box_heights / heights),
        ],
        axis=1,
    )


def box_l1_loss(
    deltas: jax.Array, anchors: jax.Array, matched: jax.Array, targets: dict[str, jax.Array]
) -> jax.Array:
    """RetinaNet's box regression loss, as torchvision computes it: L1 between the deltas of
    the foreground anchors and those that move each onto its box, summed per image over its
    foreground count, averaged over the images."""

    def l1(deltas: jax.Array, anchors: jax.Array, boxes: jax.Array) -> jax.Array:
        return jnp.abs(deltas - encode_boxes(boxes, anchors)).sum(axis=1)

    return foreground_box_loss(deltas, anchors, matched, targets, l1)


def box_giou_loss(
    deltas: jax.Array,
    anchors: jax.Array,
    matched: jax.Array,
    targets: dict[str, jax.Array],
    eps: float,
) -> jax.Array:
    """RetinaNet's box regression loss of torchvision's "giou" type (retinanet_resnet50_fpn_v2):
    1 - generalized IoU between each foreground anchor's decoded box and its box, summed per
    image over its foreground count, averaged over the images."""

    def giou(deltas: jax.Array, anchors: jax.Array, boxes: jax.Array) -> jax.Array:
        return 1 - generalized_iou(decode_boxes(deltas, anchors), boxes, eps)

    return foreground_box_loss(deltas, anchors, matched, targets, giou)


def foreground_box_loss(
    deltas: jax.Array,
    anchors: jax.Array,
    matched: jax.Array,
    targets: dict[str, jax.Array],
    loss: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
) -> jax.Array:
    """`loss` per row of the anchors' deltas, anchors and matched boxes, summed over the
    foreground rows per image over its foreground count, averaged over the images
    (torchvision's RetinaNet regression head)."""

    def one_image(
        deltas: jax.Array, anchors: jax.Array, matches: jax.Array, boxes: jax.Array
    ) -> jax.Array:
        foreground = matches >= 0
        # a background anchor's own box: deltas of 0, no log of 0 to poison the gradient
        boxes = jnp.where(foreground[:, None], boxes[jnp.maximum(matches, 0)], anchors)
        rows = loss(deltas, anchors, boxes)
        return jnp.sum(jnp.where(foreground, rows, 0.0)) / jnp.maximum(foreground.sum(), 1)

    return jnp.mean(jax.vmap(one_image)(deltas, anchors, matched, targets["boxes"]))


def generalized_iou(boxes: jax.Array, others: jax.Array, eps: float) -> jax.Array:
    """The generalized IoU of each box (x1, y1, x2, y2) with the other of its row, as
    torchvision's generalized_box_iou_loss: the IoU less the share of the smallest box
    enclosing both that neither covers. (rows,)"""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    sides = jnp.minimum(boxes[:, 2:], others[:, 2:]) - jnp.maximum(boxes[:, :2], others[:, :2])
    inter = jnp.maximum(sides, 0).prod(axis=1)
    union = areas + other_areas - inter
    hull = jnp.maximum(boxes[:, 2:], others[:, 2:]) - jnp.minimum(boxes[:, :2], others[:, :2])
    hull_area = hull.prod(axis=1)
    return inter / (union + eps) - (hull_area - union) / (hull_area + eps)


def hard_negative_loss(
    logits: jax.Array,
    matched: jax.Array,
    targets: dict[str, jax.Array],
    negatives_per_positive: float,
) -> jax.Array:
    """SSD's classification loss, as torchvision computes it: cross entropy of every row
    labelled by its box (background 0 where unmatched), summed over the foreground rows and,
    per image, the `negatives_per_positive` times as many background rows of highest loss;
    over the batch's foreground count."""
    labels = jnp.take_along_axis(targets["labels"], jnp.maximum(matched, 0), axis=1)
    truth = jnp.where(matched >= 0, labels, 0)
    log_scores = jax.nn.log_softmax(logits, axis=-1)
    losses = -jnp.take_along_axis(log_scores, truth[..., None], axis=-1)[..., 0]
    foreground = truth > 0
    hardness = jnp.where(foreground, -jnp.inf, losses)
    ranks = jnp.argsort(jnp.argsort(-hardness, axis=1, stable=True), axis=1)
    hardest = ranks < negatives_per_positive * foreground.sum(axis=1, keepdims=True)
    total = jnp.sum(jnp.where(foreground, losses, 0.0)) + jnp.sum(jnp.where(hardest, losses, 0.0))
    return total / jnp.maximum((matched >= 0).sum(), 1)


def box_smooth_l1_loss(
    deltas: jax.Array,
    anchors: jax.Array,
    matched: jax.Array,
    targets: dict[str, jax.Array],
    beta: float,
    weights: tuple[float, ...],
    normalizer: str,
) -> jax.Array:
    """SSD's or an RPN's box regression loss, as torchvision computes them: smooth L1 between
    the deltas of the foreground rows and those that move each anchor onto its box (times
    `weights`), summed over the batch and divided by its "foreground" count or by its rows
    not ignored ("sampled": an RPN's sample)."""

    def one_image(
        deltas: jax.Array, anchors: jax.Array, matches: jax.Array, boxes: jax.Array
    ) -> jax.Array:
        foreground = matches >= 0
        # a background anchor's own box: deltas of 0, no log of 0 to poison the gradient
        boxes = jnp.where(foreground[:, None], boxes[jnp.maximum(matches, 0)], anchors)
        error = jnp.abs(deltas - encode_boxes(boxes, anchors, weights))
        loss = jnp.where(error < beta, 0.5 * error**2 / beta, error - 0.5 * beta).sum(axis=1)
        return jnp.sum(jnp.where(foreground, loss, 0.0))

    losses = jax.vmap(one_image)(deltas, anchors, matched, targets["boxes"])
    counted = matched >= 0 if normalizer == "foreground" else matched >= -1
    return losses.sum() / jnp.maximum(counted.sum(), 1)


def sample_matches(
    matched: jax.Array, key: jax.Array, batch_size_per_image: int, positive_fraction: float
) -> jax.Array:
    """A random sample of each image's matched rows for training, as torchvision's
    BalancedPositiveNegativeSampler draws it (from `key`, in fixed sizes for jit): up to
    `batch_size_per_image` rows, foreground up to `positive_fraction` of them. (N, rows):
    the match where sampled, -1 for sampled background, -2 elsewhere."""
    keys = jax.random.split(key, len(matched))
    sample = jax.vmap(sample_rows, in_axes=(0, 0, None, None))
    return sample(matched, keys, batch_size_per_image, positive_fraction)


def sample_rows(
    matches: jax.Array, key: jax.Array, batch_size_per_image: int, positive_fraction: float
) -> jax.Array:
    """One image's sample of its matched rows, as sample_matches draws it: the foreground
    and the background rows each in a random order, the first of each kept."""
    foreground, background = matches >= 0, matches == -1
    positives = jnp.minimum(foreground.sum(), int(batch_size_per_image * positive_fraction))
    negatives = jnp.minimum(background.sum(), batch_size_per_image - positives)
    draws = jax.random.uniform(key, matches.shape)

    def first(members: jax.Array, count: jax.Array) -> jax.Array:
        places = jnp.argsort(jnp.argsort(jnp.where(members, draws, 2.0)))
        return members & (places < count)

    sampled = jnp.where(first(background, negatives), -1, -2)
    return jnp.where(first(foreground, positives), matches, sampled)


def sample_proposals(
    proposals: jax.Array,
    targets: dict[str, jax.Array],
    key: jax.Array,
    batch_size_per_image: int,
    positive_fraction: float,
    fg_iou_thresh: float,
    bg_iou_thresh: float,
) -> jax.Array:
    """Training samples of each image's proposals (rows of no size are padding) and its
    target boxes, added to them, as torchvision's RoIHeads draws them (from `key`, in fixed
    sizes for jit): matched without low-quality matches, then sampled as sample_matches
    does. (N, batch_size_per_image, 5) rows of x1, y1, x2, y2 and the target box's index (-1
    for background), in the boxes' order; past an image's samples, zeros with -2."""
    boxes = jnp.concatenate([proposals, targets["boxes"].astype(proposals.dtype)], axis=1)
    sides = proposals[..., 2:] - proposals[..., :2]
    real = jnp.concatenate([jnp.all(sides > 0, axis=-1), targets["labels"] >= 0], axis=1)
    matched = match_anchors(boxes, targets, fg_iou_thresh, bg_iou_thresh, "off")
    keys = jax.random.split(key, len(boxes))
    sample = jax.vmap(sample_rows, in_axes=(0, 0, None, None))
    sampled = sample(jnp.where(real, matched, -2), keys, batch_size_per_image, positive_fraction)

    def one_image(boxes: jax.Array, sampled: jax.Array) -> jax.Array:
        kept = jnp.argsort(sampled < -1, stable=True)[:batch_size_per_image]  # in order
        rows = jnp.concatenate([boxes[kept], sampled[kept, None].astype(boxes.dtype)], axis=1)
        empty = jnp.zeros((batch_size_per_image, 5), boxes.dtype).at[:, 4].set(-2)
        return empty.at[: len(kept)].set(jnp.where(sampled[kept, None] >= -1, rows, empty[0]))

    return jax.vmap(one_image)(boxes, sampled)


def binary_cross_entropy(logits: jax.Array, truth: jax.Array) -> jax.Array:
    """Binary cross entropy of each logit against its truth (0 to 1), as torch's
    binary_cross_entropy_with_logits computes it, unreduced."""
    return jnp.maximum(logits, 0) - logits * truth + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def objectness_loss(logits: jax.Array, sampled: jax.Array) -> jax.Array:
    """An RPN's objectness loss, as torchvision computes it: binary cross entropy of each
    sampled row's logit against 1 for foreground and 0 for background, averaged over the
    batch's samples."""
    logits, chosen = logits[..., 0], sampled >= -1
    truth = (sampled >= 0).astype(logits.dtype)
    losses = binary_cross_entropy(logits, truth)
    return jnp.where(chosen, losses, 0.0).sum() / jnp.maximum(chosen.sum(), 1)


def sample_labels(samples: jax.Array, targets: dict[str, jax.Array]) -> jax.Array:
    """Each sample's class: its target box's label, 0 for background, -1 past the samples."""
    matches = samples[..., 4].astype(jnp.int32)
    found = jnp.take_along_axis(targets["labels"], jnp.maximum(matches, 0), axis=1)
    return jnp.where(matches >= 0, found, jnp.where(matches == -1, 0, -1))


def roi_classification_loss(
    logits: jax.Array, samples: jax.Array, targets: dict[str, jax.Array]
) -> jax.Array:
    """Fast R-CNN's classification loss, as torchvision computes it: cross entropy of each
    sampled proposal's class logits against its box's label (0 for background), averaged
    over the samples."""
    labels = sample_labels(samples, targets).reshape(-1)
    picked = jnp.take_along_axis(logits, jnp.maximum(labels, 0)[:, None], axis=1)[:, 0]
    losses = jax.nn.logsumexp(logits, axis=1) - picked
    return jnp.where(labels >= 0, losses, 0.0).sum() / jnp.maximum((labels >= 0).sum(), 1)


def foreground_samples(samples: jax.Array, limit: int) -> jax.Array:
    """Each image's foreground samples (those of sample_proposals matched to a target box),
    as torchvision's RoIHeads feeds its mask head in training: (N, limit, 5) in the samples'
    order, then zeros with -2."""
    kept = jnp.argsort(samples[..., 4] < 0, axis=1, stable=True)[:, :limit]
    rows = jnp.take_along_axis(samples, kept[..., None], axis=1)
    empty = jnp.asarray([0.0, 0.0, 0.0, 0.0, -2.0], samples.dtype)
    return jnp.where(rows[..., 4:] >= 0, rows, empty)


def mask_loss(logits: jax.Array, samples: jax.Array, targets: dict[str, jax.Array]) -> jax.Array:
    """Mask R-CNN's mask loss, as torchvision computes it: binary cross entropy of each
    foreground sample's mask logits for its box's class against its box's target mask
    ("masks" (N, boxes, H, W), 0 or 1 per pixel) cropped to the sample and pooled to the
    logits' size, averaged over those samples' pixels."""
    size = logits.shape[1]
    matches = samples[..., 4].astype(jnp.int32)
    picked = jnp.maximum(matches, 0)
    labels = jnp.maximum(jnp.take_along_axis(targets["labels"], picked, axis=1), 0)
    logits = logits.reshape(*matches.shape, size, size, -1)  # NHWC per sample
    chosen = jnp.take_along_axis(logits, labels[..., None, None, None], axis=-1)[..., 0]
    masks = jnp.take_along_axis(targets["masks"], picked[..., None, None], axis=1)
    masks = masks.reshape(-1, *masks.shape[2:]).astype(logits.dtype)
    truth = crop_masks(masks, samples[..., :4].reshape(-1, 4), size).reshape(chosen.shape)
    losses = jnp.where((matches >= 0)[..., None, None], binary_cross_entropy(chosen, truth), 0.0)
    return losses.sum() / jnp.maximum((matches >= 0).sum() * size * size, 1)


def crop_masks(masks: jax.Array, boxes: jax.Array, size: int) -> jax.Array:
    """Each box's crop of its mask (rows, H, W) pooled to size x size, as torchvision's
    project_masks_on_boxes does: RoIAlign (aligned=False) with its adaptive sampling ratio,
    as a matrix of sample weights per axis. (rows, size, size)."""
    rows = align_weights(boxes[:, 1], boxes[:, 3], size, masks.shape[-2])
    columns = align_weights(boxes[:, 0], boxes[:, 2], size, masks.shape[-1])
    return rows @ masks @ jnp.swapaxes(columns, 1, 2)


def align_weights(starts: jax.Array, ends: jax.Array, size: int, length: int) -> jax.Array:
    """RoIAlign's sampling along one axis of `length` pixels as a matrix (rows, size,
    length): each bin's mean weight on each pixel over its ceil(bin) samples (the adaptive
    ratio; a box longer than the axis samples as one as long would)."""
    bins = jnp.maximum(ends - starts, 1.0) / size
    most = math.ceil(length / size)
    ratios = jnp.minimum(jnp.ceil(bins), most)[:, None]
    low, high, weights = bilinear_taps(bin_points(starts, bins, size, ratios, most), length)
    taken = np.tile(np.arange(most), size) < ratios
    weights = weights * (taken / ratios)[..., None]
    matrix = jax.nn.one_hot(low, length) * weights[..., :1]
    matrix = matrix + jax.nn.one_hot(high, length) * weights[..., 1:]
    return matrix.reshape(len(starts), size, most, length).sum(axis=2)


def roi_box_loss(
    deltas: jax.Array,
    samples: jax.Array,
    targets: dict[str, jax.Array],
    beta: float,
    weights: tuple[float, ...],
) -> jax.Array:
    """Fast R-CNN's box regression loss, as torchvision computes it: smooth L1 between each
    foreground sample's deltas for its box's class and those that move the sample onto its
    box (times `weights`), summed and divided by the number of samples."""
    labels = sample_labels(samples, targets)
    deltas = deltas.reshape(*labels.shape, -1, 4)

    def one_image(
        deltas: jax.Array, labels: jax.Array, samples: jax.Array, boxes: jax.Array
    ) -> jax.Array:
        foreground = labels > 0
        chosen = jnp.take_along_axis(deltas, jnp.maximum(labels, 0)[:, None, None], axis=1)[:, 0]
        sampled = samples[:, :4]
        # a background sample's own box: deltas of 0, no log of 0 to poison the gradient
        truth = boxes[jnp.maximum(samples[:, 4].astype(jnp.int32), 0)]
        truth = jnp.where(foreground[:, None], truth, sampled)
        error = jnp.abs(chosen - encode_boxes(truth, sampled, weights))
        loss = jnp.where(error < beta, 0.5 * error**2 / beta, error - 0.5 * beta).sum(axis=1)
        return jnp.sum(jnp.where(foreground, loss, 0.0))

    losses = jax.vmap(one_image)(deltas, labels, samples, targets["boxes"])
    return losses.sum() / jnp.maximum((labels >= 0).sum(), 1)
