"""The one boundary between spec text and generated code.

Everything a spec (or the command line) says that ends up in a generated file passes through
here: names are checked once, when the spec is read, with a located error that says why a
name cannot be used; text (docs, paths, output names, string values, the "Regenerate"
command) is escaped when it is written. Nothing else formats spec text into source.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata

from archc import TEMPLATES
from archc.errors import Location, SpecError
from archc.ir.functions import FUNCTIONS
from archc.limits import MAX_NAME_LENGTH

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FRAMEWORK_ATTRIBUTES = _words(
    # torch.nn.Module's attributes (and nn.Sequential's list methods), then flax.nnx.Module's
    """
    add_module append apply bfloat16 buffers call_super_init children compile cpu cuda double
    dump_patches eval extend extra_repr float forward get_buffer get_extra_state get_parameter
    get_submodule half insert ipu load_state_dict modules mtia named_buffers named_children
    named_modules named_parameters parameters pop register_backward_hook register_buffer
    register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
    set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
    T_destination
    iter_children iter_modules perturb set_attributes sow
    """
)
"""Attributes a module already has: a child by one of these names would replace it."""


def _helper_names() -> frozenset[str]:
    """Top-level names the helpers a generated file may copy in define (read as text)."""
    names = set(FUNCTIONS)
    for helpers in TEMPLATES.glob("*/helpers.py"):
        text = helpers.read_text(encoding="utf-8")
        names.update(re.findall(r"^(?:def|class) (\w+)", text, re.MULTILINE))
    return frozenset(names)


GENERATED_GLOBALS = (
    # Imports (each backend's import table) and the functions every file defines.
    _words("math Any Callable torch F nn jax jnp np nnx create_model load_torch_state_dict")
    | _words("inference_state_dict FOLDED_NORMS JOINED RENUMBERED functools init_weights")
    | _helper_names()
)
"""Module-level names of a generated file, which a class name or a constructor's local
would shadow."""

CONSTRUCTOR_LOCALS = _words("self channels i rngs")
"""Names generated constructors use for themselves (other locals are chosen around the
params, and call methods read params through `self`)."""


def check_name(name: object, location: Location, what: str, reserved: frozenset[str]) -> str:
    """A spec name that becomes a Python identifier: ASCII letters, digits and `_`, not a
    keyword, not private (`__…`), at most MAX_NAME_LENGTH long, and none of `reserved`."""
    text = _checked(name, location, what, IDENTIFIER, "an identifier", reserved)
    if keyword.iskeyword(text):
        raise SpecError(f"{what} '{text}' is a Python keyword", location, "rename it")
    return text


MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_node_name(name: object, location: Location) -> str:
    """A node's name, which names its module in both frameworks (`layer3.2.conv2`): what
    torch's `add_module` accepts, in ASCII letters, digits, `_` and `-` (a `.` would split
    the parameter path). A name Python cannot spell (`block1-0`, `3x3`, `class`) is set and
    read through setattr/getattr, so the state_dict keeps it."""
    return _checked(name, location, "node name", MODULE_NAME, "a module name", NODE_RESERVED)


_ALPHABETS = {
    IDENTIFIER.pattern: "ASCII letters, digits and _, not starting with a digit",
    MODULE_NAME.pattern: "ASCII letters, digits, _ and -; a . would split the parameter path",
}


def _checked(
    name: object,
    location: Location,
    what: str,
    pattern: re.Pattern[str],
    kind: str,
    reserved: frozenset[str],
) -> str:
    """The rules every name shares: its alphabet (a look-alike is told what it normalises
    to), its length, no leading `__`, none of `reserved`."""
    text = str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else None
    if text is None or not pattern.fullmatch(text):
        normal = unicodedata.normalize("NFKC", text) if text else ""
        hint = (
            f"it reads as '{normal}' once normalised (NFKC), which would collide; write that"
            if normal != text and pattern.fullmatch(normal)
            else _ALPHABETS[pattern.pattern]
        )
        raise SpecError(f"{what} must be {kind}, got {repr(name)[:60]}", location, hint)
    if len(text) > MAX_NAME_LENGTH:
        raise SpecError(
            f"{what} is {len(text)} characters long; the limit is {MAX_NAME_LENGTH}", location
        )
    if text.startswith("__"):
        raise SpecError(f"{what} '{text}' starts with '__', which Python reserves", location)
    if text in reserved:
        raise SpecError(
            f"{what} '{text}' is reserved: {_why_reserved(text)}", location, "rename it"
        )
    return text


def spelt(name: str) -> bool:
    """Whether Python code can write `name` as an attribute or variable."""
    return name.isidentifier() and not keyword.iskeyword(name)


def attribute(owner: str, name: str) -> str:
    """`owner.name`, or `getattr(owner, "block1-0")` for a name Python cannot spell."""
    return f"{owner}.{name}" if spelt(name) else f"getattr({owner}, {string_literal(name)})"


def local_name(name: str) -> str:
    """A Python variable for a node's value: its name with any other character made `_`
    (`block1-0` → `block1_0`, `3x3` → `_3x3`)."""
    text = re.sub(r"\W", "_", name)
    return f"_{text}" if text[:1].isdigit() else text


def _why_reserved(name: str) -> str:
    if name in FRAMEWORK_ATTRIBUTES:
        return "torch and flax modules already have an attribute of that name"
    if name in GENERATED_ATTRIBUTES:
        return "generated blocks keep their output width in that attribute"
    if name in GENERATED_METHODS:
        return "a generated model with a detection stage has a method of that name"
    if name in GENERATED_GLOBALS:
        return "the generated file defines or imports that name"
    if name in CONSTRUCTOR_LOCALS:
        return "generated code uses that name itself"
    if hasattr(builtins, name):
        return "it is a Python builtin that generated code may call"
    return "generated code uses that name"


WIDTH_ATTRIBUTE = "out_channels"
"""Where a generated block keeps its output width, which a stage loop reads to carry its
channel count on (as torchvision's `InvertedResidual.out_channels`)."""
GENERATED_ATTRIBUTES = frozenset({WIDTH_ATTRIBUTE})
"""Attributes generated classes set besides their children."""
GENERATED_METHODS = frozenset({"detect", "loss"})
"""The methods a model with a detection stage (`postprocess:`) has besides forward."""

NODE_RESERVED = FRAMEWORK_ATTRIBUTES | GENERATED_ATTRIBUTES | GENERATED_METHODS
"""A node becomes an attribute of its block's module."""
CLASS_RESERVED = GENERATED_GLOBALS | frozenset(dir(builtins))
"""A block becomes a class at the top of the generated file."""
CREATE_MODEL_OPTIONS = _words("channels_last autocast compile dtype param_dtype")
"""Keyword arguments of create_model besides the model's params (torch's, flax's)."""

PARAM_RESERVED = (
    GENERATED_GLOBALS | CONSTRUCTOR_LOCALS | CREATE_MODEL_OPTIONS | frozenset(dir(builtins))
)
"""A param or let becomes a constructor argument or local, and expressions read it."""
MODEL_RESERVED = frozenset(dir(builtins))
"""A model name becomes a file and module name."""


def model_class_name(model: str) -> str:
    """The model's class: its name in PascalCase (`resnet50` → `Resnet50`)."""
    return "".join(part[:1].upper() + part[1:] for part in model.split("_"))


def string_literal(text: str) -> str:
    """`text` as a Python string literal that holds exactly it: double-quoted, unless it
    holds more double quotes than single ones (the quotes ruff's formatter would choose)."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    return quote + _escaped(text, quote) + quote


def docstring_text(text: str) -> str:
    """`text` made safe inside a triple-quoted docstring: backslashes, control characters and
    any quote that could close the docstring, or run on from its opening quotes, are escaped;
    other characters stay as written."""
    escaped = _escaped(text, "")
    return re.sub(r'^"|"(?="|$)', r'\\"', escaped)


def _escaped(text: str, quote: str) -> str:
    pieces = []
    for character in text:
        if character == "\\" or character == quote:
            pieces.append("\\" + character)
        elif character.isprintable() or character == " ":
            pieces.append(character)
        else:  # newlines, NUL, line separators, surrogates: written as escapes
            code = ord(character)
            pieces.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(pieces)
