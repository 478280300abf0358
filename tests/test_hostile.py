"""Hostile and malformed specs: each is refused with one located error (the position marked `⟨`
in its text), exit status 2, no traceback, without hanging (a 20 s guard) and within 200 MiB,
nothing run, nothing written.
"""

from __future__ import annotations

import contextlib
import io
import signal
import tracemalloc
from pathlib import Path

import pytest

from archc.cli import main
from tests.helpers import assert_quotes_the_spec

MARK = "⟨"
HEAD = "archc: 1\nname: tiny\ninput: [3, 16, 16]\nbody:\n"
CANARY = "__import__('os').system('touch CANARY')"


def body(*lines: str) -> str:
    return HEAD + "".join(f"  {line}\n" for line in lines)


def with_blocks(nodes: list[str], blocks: str) -> str:
    return body(*nodes) + "blocks:\n" + blocks


CASES: dict[str, tuple[str, str]] = {}
"""name → (spec text with ⟨ at the error, a fragment of the message)."""


def case(name: str, text: str, fragment: str) -> None:
    assert text.count(MARK) == 1, name
    assert name not in CASES, name
    CASES[name] = (text, fragment)


# Names: module names torch refuses, framework attributes, the generated file's own names.
# (Node names Python cannot spell but torch accepts, `class` or `block1-0`, are built: see
# tests/specs/regressions/module_names.yaml.)
for label, word in (
    ("a dot", "a.b"),
    ("a slash", "a/b"),
    ("a quote", "'a\"b'"),
    ("a colon", "'a:b'"),
    ("brackets", "'a[0]'"),
    ("an empty name", "''"),
    ("an emoji", "'conv🙂'"),
    ("a newline", '"a\\nb"'),
    ("a NUL", '"a\\0b"'),
):
    case(f"node name with {label}", body(f"⟨{word}: relu"), "node name must be a module name")
for word in [
    "forward",
    "training",
    "parameters",
    "state_dict",
    "eval",
    "train",
    "to",
    "cuda",
    "apply",
    "modules",
    "children",
    "half",
    "float",
    "double",
    "type",
    "zero_grad",
    "register_buffer",
    "add_module",
    "load_state_dict",
    "sow",
    "perturb",
    "iter_modules",
    "set_attributes",
]:
    case(f"node named {word}", body(f"⟨{word}: relu"), "torch and flax modules already have")
case("node named out_channels", body("⟨out_channels: relu"), "keep their output width in that")
for word in ("__init__", "__dict__", "__class__"):
    case(f"node named {word}", body(f"⟨{word}: relu"), "starts with '__'")
for label, word in (("unicode", "café"), ("space", "'a b'")):
    case(f"node name with a {label}", body(f"⟨{word}: relu"), "node name must be a module name")
case(
    "fullwidth look-alike", body("conv: relu", "⟨ｃｏｎｖ: relu"), "reads as 'conv' once normalised"
)
case("very long node name", body("⟨" + "n" * 101 + ": relu"), "the limit is 100")
for word in (
    "torch",
    "nn",
    "F",
    "jnp",
    "np",
    "nnx",
    "create_model",
    "load_torch_state_dict",
    "BatchNorm",
    "FrozenBatchNorm2d",
    "pair",
    "make_divisible",
    "window_mask",
    "int",
    "range",
    "print",
):
    case(
        f"block named {word}",
        with_blocks(["b: relu"], f"  ⟨{word}:\n    body: {{r: relu}}\n"),
        f"block name '{word}' is reserved",
    )
case(
    "block named like a keyword",
    with_blocks(["b: relu"], "  ⟨class:\n    body: {r: relu}\n"),
    "is a Python keyword",
)
case(
    "block named as the model's class",
    "archc: 1\nname: ⟨tiny\ninput: [3, 16, 16]\nbody:\n  t: Tiny\nblocks:\n  Tiny:\n"
    "    body: {r: relu}\n",
    "the model's class Tiny would be block Tiny",
)
for word in ("self", "rngs", "channels", "i", "torch", "nn", "range", "len", "make_divisible"):
    case(
        f"param named {word}",
        "archc: 1\nname: tiny\nparams: {⟨" + word + ": 1}\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
        f"param name '{word}' is reserved",
    )
case(
    "param named in_channels",
    with_blocks(["b: B"], "  B:\n    params: {⟨in_channels: 1}\n    body: {r: relu}\n"),
    "is reserved",
)
case(
    "let named self",
    "archc: 1\nname: tiny\nlet: {⟨self: 1}\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "let name 'self' is reserved",
)
case("empty model name", "archc: 1\nname: '⟨'\ninput: [3, 16, 16]\nbody:\n  r: relu\n", "name")
case(
    "input named class",
    with_blocks(["b: B"], "  B:\n    inputs: [⟨class]\n    body: {r: relu}\n"),
    "input name 'class' is a Python keyword",
)
for word in ("__init__", "__main__", "print", "1net", "my-net", "[net]"):
    case(
        f"model named {word}",
        f"archc: 1\nname: ⟨{word}\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
        "name",
    )
for word in ("batch_norm", "frozen", "stochastic_depth"):  # the class a helper already is
    case(
        f"model named {word}",
        f"archc: 1\nname: ⟨{word}\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
        "a name the generated file already defines",
    )
case(
    "frozen item of a sequence",
    body("s: [{op: relu, frozen: ⟨true}]"),
    "items of a sequence cannot be frozen one by one",
)
case("frozen given a number", body("c: {op: conv2d, out: 4, kernel: 1, frozen: ⟨3}"), "frozen")
case(
    "frozen by the loop variable",
    body("c: {op: conv2d, out: 4, kernel: 1, repeat: 2, frozen: ⟨i < 1}"),
    "i",
)
case("names template giving a dot", body('r: {op: relu, repeat: 1, names: "⟨a.b"}'), "module name")
case(
    "names template that collides",
    body('r: ⟨{op: relu, repeat: 2, names: "same"}'),
    "two nodes are named same",
)
case(
    "names template with a dash",
    body('r: {op: relu, repeat: 2, names: "⟨a {i}"}'),
    "node name must be a module name, got 'a 0'",
)
case(
    "names template reserved",
    body('r: {op: relu, repeat: 1, names: "⟨forward"}'),
    "torch and flax modules already have",
)

# YAML: only the core schema, no anchors or merge keys, UTF-8, finite numbers.
for tag in (
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system ''",
    "!!binary aGk=",
    "!custom 3",
    "!!set {a: null}",
    "!!omap [a: 1]",
    "!!timestamp 2001-12-14",
    "!<tag:example.com,2000:app/x> 3",
):
    case(
        f"tag {tag.split()[0]}",
        body(f"c: {{op: conv2d, out: ⟨{tag}, kernel: 1}}"),
        "is not allowed in specs",
    )
case(
    "merge key",
    "archc: 1\nname: tiny\ninput: [3, 16, 16]\nbody:\n  r: {⟨<<: {op: relu}}\n",
    "not allowed in specs",
)
case(
    "anchor",
    "archc: 1\nname: tiny\ninput: ⟨&size [3, 16, 16]\nbody:\n  r: relu\n",
    "YAML anchors and aliases are not allowed",
)
BOMB = "".join(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]\n" for k in range(1, 10))
case("alias bomb", "archc: 1\nname: tiny\nl0: ⟨&l0 [lol]\n" + BOMB, "YAML anchors and aliases")
case("duplicate node", body("r: relu", "⟨r: relu"), "duplicate key 'r'")
case("infinity", body("b: {op: batch_norm, eps: ⟨.inf}"), "expected a finite number")
case("not a number", body("b: {op: batch_norm, eps: ⟨.nan}"), "expected a finite number")
case(
    "huge integer literal",
    body("c: {op: conv2d, out: ⟨" + "9" * 30 + ", kernel: 1}"),
    "an integer beyond the limit of 64 bits",
)
case(
    "long string",
    "archc: 1\nname: tiny\ndoc: ⟨" + "x" * 10_001 + "\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "the limit is 10,000",
)
case(
    "tab indentation",
    "archc: 1\nname: tiny\ninput: [3, 16, 16]\nbody:\n⟨\tr: relu\n",
    "invalid YAML",
)
case("control character", "archc: 1\nname: ⟨\x07tiny\n", "control characters are not allowed")
case("control character after text", "archc: 1\ndoc: 'é ⟨\x00'\n", "control characters")
case("two documents", "archc: 1\nname: tiny\n⟨---\nname: other\n", "one YAML document")
case("core tag on wrong text", body("c: {op: conv2d, out: ⟨!!int eight, kernel: 1}"), "as !!int")
case("a list at the top", "⟨- archc: 1\n", "a spec must be a YAML mapping")

# Expressions: no work beyond the limits, no Python beyond the whitelist.
EXPRESSIONS = {
    "power tower": ("2**10**10", "64-bit integers"),
    "big power": ("10**100", "64-bit integers"),
    "list repetition": ("len(⟨[0] * 10**9)", "the limit is 100,000"),
    "string repetition": ("len(⟨'a' * 10**9)", "the limit is 100,000"),
    "huge range": ("len(⟨range(10**12))", "the limit is 100,000"),
    "sum of a huge range": ("sum(⟨range(10**9))", "the limit is 100,000"),
    "comprehension over a huge range": ("len([k for k in ⟨range(10**9)])", "the limit is 100,000"),
    "division by zero": ("8 // 0", "division"),
    "true division by zero": ("8 / 0", "division"),
    "modulo by zero": ("8 % 0", "modulo"),
    "import": (CANARY, "unknown function"),
    "eval": ("eval('1')", "unknown function 'eval'"),
    "open": ("open('/etc/passwd')", "unknown function 'open'"),
    "lambda": ("(lambda: 1)()", "unknown function"),
    "attribute": ("(1).__class__", "is not allowed"),
    "walrus": ("(⟨y := 3)", "is not allowed"),
    "f-string": ("f'{1}'", "is not allowed"),
    "bad syntax": ("8 +", "bad expression"),
    "unknown name": ("widht", "unknown name 'widht'"),
    "chained comparison": ("1 < 2 < 3", "chained comparisons"),
    "keyword argument": ("max(1, key=2)", "unknown function"),
    "overflowing float": ("int(1e308 * 10)", "int()"),
}
for name, (expression, fragment) in EXPRESSIONS.items():
    marked = expression if MARK in expression else MARK + expression
    case(f"expression: {name}", body(f'c: {{op: conv2d, out: "{marked}", kernel: 1}}'), fragment)
case(
    "deeply nested expression",
    body(
        'c: {op: conv2d, out: "' + "(" * 200 + "⟨" + "(" * 100 + "1" + ")" * 300 + '", kernel: 1}'
    ),
    "too many nested parentheses",
)
case(
    "very long sum", body('c: {op: conv2d, out: "⟨' + "+".join(["1"] * 3000) + '", kernel: 1}'), ""
)

# Bounds and recursion.
for count in ("0", "-1", "10001", "1000000000"):
    case(
        f"repeat {count}",
        body(f"r: {{op: relu, repeat: ⟨{count}}}"),
        "repeat: expected a count from 1 to 10,000",
    )
case(
    "nested repeats beyond the node limit",
    with_blocks(
        ["b: {block: B, repeat: 10000}"], "  B:\n    body:\n      r: {op: relu, repeat: ⟨1000}\n"
    ),
    "more than the limit of 1,000,000 nodes",
)
case(
    "a block that uses itself",
    with_blocks(["b: A"], "  A:\n    body: {a: ⟨A}\n"),
    "block A contains itself: A → A",
)
case(
    "two blocks that use each other",
    with_blocks(["b: A"], "  A:\n    body: {a: B}\n  B:\n    body: {b: ⟨A}\n"),
    "A → B → A",
)
case(
    "three blocks in a cycle",
    with_blocks(
        ["b: A"], "  A:\n    body: {a: B}\n  B:\n    body: {b: C}\n  C:\n    body: {c: ⟨A}\n"
    ),
    "A → B → C → A",
)
DEEP = "".join(f"  B{k}:\n    body: {{b: B{k + 1}}}\n" for k in range(100))
case(
    "blocks nested too deep",
    with_blocks(
        ["b: B0"],
        DEEP.replace("  B99:\n    body: {b: B100}", "  B99:\n    body: {b: ⟨B100}")
        + "  B100:\n    body: {r: relu}\n",
    ),
    "nested more than 100 deep",
)
case("unknown block", body("b: ⟨{block: Bottlenek}"), "unknown block 'Bottlenek'")
case("unknown op or block", body("b: ⟨Bottlenek"), "unknown op 'Bottlenek'")

# Op attributes out of range.
RANGES = [
    ("conv2d", "out: ⟨0, kernel: 1", "at least 1"),
    ("conv2d", "out: ⟨-16, kernel: 1", "at least 1"),
    ("conv2d", "out: 8, kernel: ⟨0", "at least 1"),
    ("conv2d", "out: 8, kernel: ⟨[0, 3]", "at least 1"),
    ("conv2d", "out: 8, kernel: 1, stride: ⟨0", "at least 1"),
    ("conv2d", "out: 8, kernel: 1, dilation: ⟨0", "at least 1"),
    ("conv2d", "out: 8, kernel: 1, padding: ⟨-1", "at least 0"),
    ("conv2d", "out: 8, kernel: 1, padding: ⟨[1, -1]", "at least 0"),
    ("conv2d", "out: 8, kernel: 1, groups: ⟨0", "at least 1"),
    ("conv_transpose2d", "out: 8, kernel: 2, output_padding: ⟨-1", "at least 0"),
    ("batch_norm", "eps: ⟨0.0", "more than 0"),
    ("batch_norm", "eps: ⟨-1.0e-5", "more than 0"),
    ("batch_norm", "momentum: ⟨1.5", "at most 1"),
    ("frozen_batch_norm", "eps: ⟨0.0", "more than 0"),
    ("dropout", "p: ⟨1.5", "at most 1"),
    ("dropout", "p: ⟨-0.1", "at least 0"),
    ("max_pool2d", "kernel: ⟨0", "at least 1"),
    ("max_pool2d", "kernel: 2, stride: ⟨0", "at least 1"),
    ("max_pool2d", "kernel: 2, padding: ⟨-1", "at least 0"),
    ("avg_pool2d", "kernel: ⟨[2, 0]", "at least 1"),
    ("adaptive_avg_pool2d", "size: ⟨0", "at least 1"),
    ("upsample", "scale: ⟨0", "at least 1"),
    ("channel_shuffle", "groups: ⟨0", "at least 1"),
    ("group_norm", "groups: ⟨0", "at least 1"),
    ("group_norm", "groups: 1, eps: ⟨0.0", "more than 0"),
]
for op, attrs, fragment in RANGES:
    case(f"{op} {attrs}", body(f"x: {{op: {op}, {attrs}}}"), fragment)
TOKENS = ["t: to_tokens"]
for op, attrs, fragment in [
    ("linear", "out: ⟨0", "at least 1"),
    ("layer_norm", "eps: ⟨0.0", "more than 0"),
    ("attention", "heads: ⟨0", "at least 1"),
    ("position_embedding", "length: ⟨0", "at least 1"),
    ("class_token", "at: ⟨-1", "at least 0"),
]:
    case(f"{op} {attrs}", body(*TOKENS, f"x: {{op: {op}, {attrs}}}"), fragment)
case(
    "window_attention heads 0",
    body("p: {op: permute, layout: NHWC}", "x: {op: window_attention, heads: ⟨0, window: 4}"),
    "at least 1",
)
case(
    "window_attention shift -1",
    body(
        "p: {op: permute, layout: NHWC}",
        "x: {op: window_attention, heads: 1, window: 4, shift: ⟨-1}",
    ),
    "at least 0",
)
case("linear on an NCHW image", body("fc: ⟨{op: linear, out: 10}"), "flatten it first")
case(
    "pool padding beyond half the kernel",
    body("p: {op: max_pool2d, kernel: 2, padding: ⟨2}"),
    "padding must be at most half the kernel",
)
case(
    "bias given a number",
    body("c: {op: conv2d, out: 8, kernel: 1, bias: ⟨1}"),
    "expected a valid boolean",
)
case("kernel given a string", body("c: {op: conv2d, out: 8, kernel: ⟨three}"), "unknown name")
case("kernel given a triple", body("c: {op: conv2d, out: 8, kernel: ⟨[1, 2, 3]}"), "kernel")

# Structure.
case("unknown attribute", body("c: {op: conv2d, out: 8, ⟨kernal: 1}"), "did you mean 'kernel'")
case(
    "unknown top-level key",
    "archc: 1\nname: tiny\ninput: [3, 16, 16]\n⟨bodyy: {r: relu}\n",
    "did you mean 'body'",
)
case(
    "unknown block key", with_blocks(["b: B"], "  B:\n    ⟨bdy: {r: relu}\n"), "did you mean 'body'"
)
case(
    "unknown param key",
    "archc: 1\nname: tiny\nparams: {w: {type: int, default: 1, ⟨dflt: 2}}\n"
    "input: [3, 16, 16]\nbody:\n  r: relu\n",
    "unknown key 'dflt'",
)
case(
    "unknown param type",
    "archc: 1\nname: tiny\nparams: {w: {type: ⟨integer, default: 1}}\n"
    "input: [3, 16, 16]\nbody:\n  r: relu\n",
    "unknown param type",
)
case(
    "version 2",
    "archc: ⟨2\nname: tiny\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "unsupported spec version",
)
case("empty body", "archc: 1\nname: tiny\ninput: [3, 16, 16]\nbody: ⟨{}\n", "non-empty mapping")
case("node is a number", body("r: ⟨3"), "expected an op name, a mapping or a list")
case("node with op and block", body("r: ⟨{op: relu, block: B}"), "has both op and block")
case("from a later node", body("a: {op: relu, from: ⟨b}", "b: relu"), "unknown reference 'b'")
case("input with a zero", "archc: 1\nname: tiny\ninput: ⟨[3, 0, 16]\nbody:\n  r: relu\n", "input")
case("negative input", "archc: 1\nname: tiny\ninput: ⟨[-3, 16, 16]\nbody:\n  r: relu\n", "input")
case("when not a bool", body("r: {op: relu, when: ⟨3}"), "when")
case(
    "imports not a list",
    "archc: 1\nname: tiny\nimports: ⟨resnet\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "imports must be a list",
)
case(
    "import by absolute path",
    "archc: 1\nname: tiny\nimports: [⟨/etc/passwd]\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "expected a path relative to this file",
)
case(
    "import leaving the folder",
    "archc: 1\nname: tiny\nimports: [⟨../../../etc/passwd]\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "leaves the spec's folder",
)
case(
    "unknown shipped library",
    "archc: 1\nname: tiny\nimports: [⟨archc:resnt]\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "did you mean 'resnet'",
)
case(
    "shipped library by a path",
    "archc: 1\nname: tiny\nimports: [⟨archc:../x]\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "no shipped block library",
)
case(
    "missing import",
    "archc: 1\nname: tiny\nimports: [⟨nowhere.yaml]\ninput: [3, 16, 16]\nbody:\n  r: relu\n",
    "imported file not found",
)

# What a class could not emit as the IR says is refused by check too.
case(
    "index into branches with a repeat",
    body(
        "convs: {branches: [{op: conv2d, out: 2, kernel: 1, repeat: 2}, {op: conv2d, out: 3, "
        "kernel: 1}]}",
        'second: {op: relu, from: "⟨convs[1]"}',
    ),
    "cannot be read by index",
)
case(
    "axis set by a param",
    "archc: 1\nname: tiny\nparams: {axis: 1}\ninput: [3, 16, 16]\nbody:\n"
    "  cat: {op: concat, from: [input, input], axis: ⟨axis}\n",
    "expected a number written out, got 'axis'",
)
case(
    "a param picking an op with no module in flax",
    "archc: 1\nname: tiny\nparams: {act: {type: op, default: relu}}\ninput: [3, 16, 16]\n"
    "body:\n  a: ⟨act\n",
    "is not a module built from its input width alone in every backend",
)

case(
    "a param picking dropout, whose module takes no width, where a class builds norm(width)",
    "archc: 1\nname: tiny\ninput: [4, 8, 8]\nblocks:\n  Unit:\n"
    "    params: {norm: {type: op, default: batch_norm}}\n    body:\n"
    "      conv: {op: conv2d, out: 4, kernel: 1}\n      bn: ⟨norm\n"
    "body:\n  a: Unit\n  b: {block: Unit, norm: dropout}\n",
    "is not a module built from its input width alone in every backend",
)
case(
    "a node named as another's switch",
    body("x: {op: relu, when: true}", "use_x: ⟨relu"),
    "the class keeps the switch or count of node 'x'",
)

# Injection attempts are refused before any code exists.
case("code in a node name", body(f'⟨"{CANARY}": relu'), "node name must be a module name")
case(
    "code in a block name",
    with_blocks(["b: relu"], f'  ⟨"{CANARY}":\n    body: {{r: relu}}\n'),
    "block name must be an identifier",
)
case(
    "code in a names template",
    body(f'r: {{op: relu, repeat: 1, names: "⟨a{{{CANARY}}}"}}'),
    "unknown function",
)
case(
    "code in a param default",
    'archc: 1\nname: tiny\nparams: {w: "' + CANARY + '"}\n'
    "input: [3, 16, 16]\nbody:\n  c: {op: conv2d, out: ⟨w, kernel: 1}\n",
    "expected a valid integer",
)


@pytest.fixture(scope="module")
def warm() -> None:
    """Compile once first, so that a case's time is its own, not the first import's."""
    with contextlib.redirect_stdout(io.StringIO()):
        main(["check", str(Path(__file__).parents[1] / "specs" / "resnet18.yaml")])


# A hang guard, not a timing: a refused spec costs milliseconds, a loaded CI machine
# may stall a case for seconds, and a hang would never end.
HANG_GUARD_S = 20.0


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError(f"over {HANG_GUARD_S:g} s: the build hangs")


def test_there_are_many_cases() -> None:
    assert len(CASES) >= 150


@pytest.mark.parametrize("name", CASES)
def test_hostile_spec_is_refused_at_its_position(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warm: None
) -> None:
    marked, fragment = CASES[name]
    offset = marked.index(MARK)
    text = marked.replace(MARK, "")
    line = marked.count("\n", 0, offset) + 1
    col = offset - marked.rfind("\n", 0, offset)
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_GUARD_S)
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = main(["build", "bad.yaml", "-o", "out"])
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    error, *quoted = stderr.getvalue().splitlines() or [""]
    assert status == 2, stderr.getvalue()
    assert error.startswith(f"bad.yaml:{line}:{col}: error: "), error
    assert fragment in error
    assert "Traceback" not in stderr.getvalue()
    assert_quotes_the_spec(quoted, text, f"{line}:{col}")
    assert peak < 200 * 2**20
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "CANARY").exists()


def run(argv: list[str]) -> tuple[int, str, str]:
    """`archc ARGV` in this process: status, stdout, stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


def test_a_file_that_is_not_utf8_is_located_at_the_first_bad_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_bytes(b"archc: 1\nname: caf\xe9\n")
    status, _, stderr = run(["check", "bad.yaml"])
    assert status == 2
    assert stderr.startswith("bad.yaml:2:10: error: the spec is not UTF-8 text")


def test_a_file_over_the_size_limit_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open("big.yaml", "wb") as file:
        file.truncate(16 * 2**20 + 1)
    status, _, stderr = run(["check", "big.yaml"])
    assert status == 2
    assert stderr.startswith("big.yaml:1:1: error: the spec is 16,777,217 bytes; the limit is")


def test_set_to_a_nonsense_value_is_located_where_it_is_used() -> None:
    status, _, stderr = run(["check", "specs/resnet18.yaml", "--set", "num_classes=-5"])
    text = (Path("specs/resnet18.yaml")).read_text()
    line = text[: text.index("fc:")].count("\n") + 1
    assert status == 2
    assert stderr.startswith(f"specs/resnet18.yaml:{line}:"), stderr
    assert "fc (linear).out: expected at least 1, got -5" in stderr


def test_an_error_in_a_library_is_shown_at_each_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("inner.yaml").write_text(
        "archc: 1\nblocks:\n  B:\n    body: {c: {op: conv2d, out: 0, kernel: 1}}\n"
    )
    Path("outer.yaml").write_text("archc: 1\nimports: [inner.yaml]\n")
    Path("model.yaml").write_text(
        "archc: 1\nname: m\nimports: [outer.yaml]\ninput: [3, 8, 8]\nbody:\n  b: B\n"
    )
    status, _, stderr = run(["check", "model.yaml"])
    lines = stderr.splitlines()
    assert status == 2
    assert lines[0].startswith("inner.yaml:4:33: error: b.c (conv2d).out: expected at least 1")
    assert lines[3:] == [
        "outer.yaml:2:11: note: inner.yaml is imported here",
        "model.yaml:3:11: note: outer.yaml is imported here",
    ]


def test_an_import_cycle_is_reported_with_its_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text("archc: 1\nimports: [b.yaml]\n")
    Path("b.yaml").write_text("archc: 1\nimports: [a.yaml]\n")
    Path("model.yaml").write_text(
        "archc: 1\nname: m\nimports: [a.yaml]\ninput: [3, 8, 8]\nbody:\n  r: relu\n"
    )
    status, _, stderr = run(["check", "model.yaml"])
    assert status == 2
    assert stderr.startswith(
        "b.yaml:2:11: error: imports form a cycle: model.yaml → a.yaml → b.yaml → a.yaml"
    ), stderr


def test_a_shipped_library_is_imported_by_name_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("model.yaml").write_text(
        "archc: 1\nname: m\nimports: [archc:resnet]\ninput: [3, 32, 32]\n"
        "body:\n  block: {block: BasicBlock, planes: 8}\n"
    )
    status, stdout, stderr = run(["check", "model.yaml"])
    assert status == 0, stderr
    assert "output f32[N,8,32,32]" in stdout


@pytest.mark.parametrize("target", ["directory", "file in the way"])
def test_an_output_path_that_cannot_be_written_is_a_clean_error(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).parents[1])
    out = tmp_path / "out"
    if target == "directory":
        (out / "torch" / "resnet18.py").mkdir(parents=True)
    else:
        out.write_text("not a folder")
    status, _, stderr = run(["build", "specs/resnet18.yaml", "-o", str(out)])
    assert status == 2
    assert stderr.startswith(f"error: cannot write {out}/torch/resnet18.py: "), stderr
    assert len(stderr.splitlines()) == 1


def test_written_files_take_the_umask_mode(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        status, _, _ = run(["build", "specs/resnet18.yaml", "-o", str(tmp_path)])
    finally:
        os.umask(previous)
    assert status == 0
    assert (tmp_path / "torch" / "resnet18.py").stat().st_mode & 0o777 == 0o644


def test_an_internal_error_is_one_line_with_status_3(monkeypatch: pytest.MonkeyPatch) -> None:
    import archc.pipeline

    def broken(graph: object) -> None:
        raise KeyError("something archc forgot")

    monkeypatch.setattr(archc.pipeline, "count_costs", broken)
    status, _, stderr = run(["check", "specs/resnet18.yaml"])
    assert status == 3
    assert stderr.splitlines() == [
        "archc: internal error in check: KeyError: 'something archc forgot' (this is a bug in "
        "archc); rerun with --debug for the traceback"
    ]
    with pytest.raises(KeyError):
        run(["--debug", "check", "specs/resnet18.yaml"])


def test_a_broken_pipe_is_quiet() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        f"{sys.executable} -m archc.cli ops | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=60,
    )
    assert result.stdout.count("\n") == 1
    assert result.stderr == ""


def test_a_hundred_thousand_ops_compile_and_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounds are far above real networks: 10,000 units of 10 ops each."""
    monkeypatch.chdir(tmp_path)
    unit = "\n".join(
        f"      {name}: {body}"
        for name, body in [
            ("conv1", "{op: conv2d, out: in_channels, kernel: 1}"),
            ("bn1", "batch_norm"),
            ("relu1", "relu"),
            ("conv2", "{op: conv2d, out: in_channels, kernel: 1}"),
            ("bn2", "batch_norm"),
            ("add", "{op: add, from: [bn2, input]}"),
            ("relu2", "relu"),
            ("conv3", "{op: conv2d, out: in_channels, kernel: 1}"),
            ("bn3", "batch_norm"),
            ("relu3", "relu"),
        ]
    )
    Path("big.yaml").write_text(
        "archc: 1\nname: big\ninput: [8, 8, 8]\nblocks:\n  Unit:\n    body:\n"
        f"{unit}\nbody:\n  stage: {{block: Unit, repeat: 10000}}\n"
    )
    status, stdout, stderr = run(["build", "big.yaml", "-o", "out"])
    assert status == 0, stderr
    assert "2,640,000 params" in stdout  # 10,000 × 3 × (8·8 + 8 + 2·8)
