"""Code fingerprints, on small real packages edited between two fresh interpreters.

Each computation runs in its own subprocess with the package folder as its working directory,
so an edit is seen exactly as the next pipeline run would see it: no reloads, no mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shipyard.pipelines.fingerprint as fingerprint_module
from shipyard.pipelines.fingerprint import (
    CodeFingerprint,
    describe_changes,
    fingerprint,
    is_project_code,
)

# Prints {target: {"digest": ..., "parts": ...}} for each "module:attr.path" argument.
FINGERPRINT_SCRIPT = """
import importlib, json, sys
from shipyard.pipelines.fingerprint import fingerprint
out = {}
for target in sys.argv[1:]:
    module, _, path = target.partition(":")
    obj = importlib.import_module(module)
    for attribute in path.split("."):
        obj = getattr(obj, attribute)
    fp = fingerprint(obj)
    out[target] = {"digest": fp.digest, "parts": fp.parts}
print(json.dumps(out))
"""

Write = Callable[[str, str], None]
Compute = Callable[..., dict[str, CodeFingerprint]]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write dedented source to a file under the test folder, creating its folders."""

    def _write(name: str, text: str) -> None:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    return _write


@pytest.fixture
def compute(tmp_path: Path) -> Compute:
    """Fingerprint targets such as "steps:train" in a fresh interpreter run in the test folder."""

    def _compute(*targets: str) -> dict[str, CodeFingerprint]:
        # No .pyc: an edit within the same second and of the same size would load stale bytecode.
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(
            [sys.executable, "-c", FINGERPRINT_SCRIPT, *targets],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        raw: dict[str, Any] = json.loads(result.stdout)
        return {target: CodeFingerprint(**value) for target, value in raw.items()}

    return _compute


def _one(compute: Compute, target: str = "steps:train") -> CodeFingerprint:
    return compute(target)[target]


def test_own_body_change_changes_the_digest(write: Write, compute: Compute) -> None:
    write("steps.py", "def train(x):\n    return x + 1\n")
    before = _one(compute)
    write("steps.py", "def train(x):\n    return x + 2\n")
    after = _one(compute)

    assert before.digest != after.digest
    assert describe_changes(before.parts, after.parts) == ["steps:train changed"]


def test_comment_and_whitespace_edits_do_not_change_the_digest(
    write: Write, compute: Compute
) -> None:
    write("steps.py", "def train(x):\n    return x + 1\n")
    before = _one(compute)
    write(
        "steps.py",
        """
        # A comment above the step moves it down, which must not matter either.


        def train(x):   # trailing comment
            return (x
                    +   1)
        """,
    )
    after = _one(compute)

    assert before == after


def test_a_helper_two_modules_deep_is_followed(write: Write, compute: Compute) -> None:
    write("steps.py", "import a\n\ndef train(x):\n    return a.f(x)\n")
    write("a.py", "from b import g\n\ndef f(x):\n    return g(x) * 2\n")
    write("b.py", "def g(x):\n    return x - 1\n")
    before = _one(compute)
    write("b.py", "def g(x):\n    return x - 2\n")
    after = _one(compute)

    assert {"steps:train", "a:f", "b:g"} <= before.parts.keys()
    assert before.digest != after.digest
    assert describe_changes(before.parts, after.parts) == ["b:g changed"]


def test_a_constant_in_a_helper_module_is_part_of_the_fingerprint(
    write: Write, compute: Compute
) -> None:
    write("steps.py", "import helpers\n\ndef train(x):\n    return helpers.clean(x)\n")
    write(
        "helpers.py",
        """
        THRESHOLD = 0.5
        LABELS = {"b": (1, 2), "a": [3.0, None]}

        def clean(x):
            return [v for v in x if v > THRESHOLD and v in LABELS]
        """,
    )
    before = _one(compute)
    write(
        "helpers.py",
        """
        THRESHOLD = 0.7
        LABELS = {"a": [3.0, None], "b": (1, 2)}

        def clean(x):
            return [v for v in x if v > THRESHOLD and v in LABELS]
        """,
    )
    after = _one(compute)

    # The comprehension is nested code: its globals are found too. Dict order does not matter.
    assert describe_changes(before.parts, after.parts) == ["helpers:THRESHOLD changed"]


def test_an_unrelated_function_in_the_same_module_does_not_count(
    write: Write, compute: Compute
) -> None:
    write("steps.py", "import helpers\n\ndef train(x):\n    return helpers.clean(x)\n")
    helpers = "def clean(x):\n    return x\n\ndef plot(x):\n    return {0}\n\nUNUSED = {1}\n"
    write("helpers.py", helpers.format(1, 1))
    before = _one(compute)
    write("helpers.py", helpers.format(2, 3))
    after = _one(compute)

    assert before == after
    assert "helpers:plot" not in before.parts
    assert "helpers:UNUSED" not in before.parts


def test_import_forms_are_all_followed(write: Write, compute: Compute) -> None:
    write("pkg/__init__.py", "")
    write("pkg/sub.py", "def f(x):\n    return x + 1\n\ndef other():\n    return 0\n")
    write("alias.py", "import pkg.sub as h\n\ndef train(x):\n    return h.f(x)\n")
    write("from_import.py", "from pkg.sub import f\n\ndef train(x):\n    return f(x)\n")
    write("dotted.py", "import pkg.sub\n\ndef train(x):\n    return pkg.sub.f(x)\n")
    write("local.py", "def train(x):\n    from pkg.sub import f\n\n    return f(x)\n")
    # deep/ has no __init__.py: a namespace package, found through its __path__.
    write("deep/util.py", "def f(x):\n    return x\n")
    write("namespace.py", "import deep.util\n\ndef train(x):\n    return deep.util.f(x)\n")
    targets = [f"{name}:train" for name in ("alias", "from_import", "dotted", "local")]
    before = compute(*targets, "namespace:train")
    write("pkg/sub.py", "def f(x):\n    return x + 2\n\ndef other():\n    return 0\n")
    write("deep/util.py", "def f(x):\n    return -x\n")
    after = compute(*targets, "namespace:train")

    for target in targets:
        assert describe_changes(before[target].parts, after[target].parts) == [
            "pkg.sub:f changed"
        ], target
        assert "pkg.sub:other" not in before[target].parts
    namespace = describe_changes(before["namespace:train"].parts, after["namespace:train"].parts)
    assert namespace == ["deep.util:f changed"]


def test_a_class_is_followed_through_its_methods_and_bases(write: Write, compute: Compute) -> None:
    write("steps.py", "from models import Model\n\ndef train(x):\n    return Model().predict(x)\n")
    models = """
        import scoring

        class Base:
            def scale(self, x):
                return x * {0}

        class Model(Base):
            @property
            def bias(self):
                return scoring.bias()

            def predict(self, x):
                return self.scale(x) + {1}
        """
    write("models.py", models.format(2, 1))
    write("scoring.py", "def bias():\n    return 0\n")
    before = _one(compute)
    write("models.py", models.format(2, 5))
    after_method = _one(compute)
    write("models.py", models.format(3, 5))
    after_base = _one(compute)
    write("scoring.py", "def bias():\n    return 1\n")
    after_property = _one(compute)

    assert describe_changes(before.parts, after_method.parts) == [
        "models:Model changed",
        "models:Model.predict changed",
    ]
    assert describe_changes(after_method.parts, after_base.parts) == [
        "models:Base changed",
        "models:Base.scale changed",
    ]
    assert describe_changes(after_base.parts, after_property.parts) == ["scoring:bias changed"]


def test_a_closure_captured_helper_is_followed(write: Write, compute: Compute) -> None:
    write(
        "steps.py",
        """
        from helpers import clean

        def make(scale):
            cleaner = clean

            def train(x):
                return cleaner(x) * scale

            return train

        train = make(2)
        """,
    )
    write("helpers.py", "def clean(x):\n    return x\n")
    before = _one(compute)
    write("helpers.py", "def clean(x):\n    return abs(x)\n")
    after = _one(compute)

    assert "steps:make.<locals>.train.scale" in before.parts
    assert describe_changes(before.parts, after.parts) == ["helpers:clean changed"]


def test_a_wraps_decorated_helper_and_its_decorator_are_followed(
    write: Write, compute: Compute
) -> None:
    write("steps.py", "from helpers import clean\n\ndef train(x):\n    return clean(x)\n")
    helpers = """
        import functools

        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args){0}
            return wrapper

        @logged
        def clean(x):
            return x{1}
        """
    write("helpers.py", helpers.format("", ""))
    before = _one(compute)
    write("helpers.py", helpers.format("", " + 1"))
    after_body = _one(compute)
    write("helpers.py", helpers.format(" or 0", " + 1"))
    after_decorator = _one(compute)

    assert describe_changes(before.parts, after_body.parts) == ["helpers:clean changed"]
    assert describe_changes(after_body.parts, after_decorator.parts) == [
        "helpers:logged.<locals>.wrapper changed"
    ]


def test_a_decorated_step_is_unwrapped(write: Write, compute: Compute) -> None:
    steps = """
        import functools

        def step(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper

        @step
        def train(x):
            return x * {0}
        """
    write("steps.py", steps.format(1))
    before = _one(compute)
    write("steps.py", steps.format(2))
    after = _one(compute)

    assert "steps:step.<locals>.wrapper" in before.parts
    assert describe_changes(before.parts, after.parts) == ["steps:train changed"]


def test_mutual_and_self_recursion_terminate(write: Write, compute: Compute) -> None:
    write("steps.py", "import a\n\ndef train(n):\n    return a.even(n)\n")
    write(
        "a.py",
        """
        import b

        def even(n):
            return n == 0 or b.odd(n - 1)

        def countdown(n):
            return n if n <= 0 else countdown(n - 1)
        """,
    )
    write(
        "b.py", "import a\n\ndef odd(n):\n    return n != 0 and a.even(n - 1) and a.countdown(n)\n"
    )

    parts = _one(compute).parts

    assert {"steps:train", "a:even", "b:odd", "a:countdown"} <= parts.keys()


def test_numpy_is_not_hashed() -> None:
    # In process, on this file's own functions: starting numpy in a subprocess costs a second.
    parts = fingerprint(_numpy_step).parts

    assert list(parts) == [f"{__name__}:_numpy_step"]


def test_an_execd_function_without_source_still_fingerprints() -> None:
    source = "def helper(x):\n    return x * {0}\n\ndef train(x):\n    return helper(x) + 1\n"
    namespaces: list[dict[str, Any]] = [{}, {}, {}]
    for namespace, factor in zip(namespaces, (2, 2, 3), strict=True):
        exec(source.format(factor), namespace)
    first, same, changed = (fingerprint(namespace["train"]) for namespace in namespaces)

    assert first == same
    assert first.digest != changed.digest
    assert describe_changes(first.parts, changed.parts) == ["<exec>:helper changed"]


def test_captured_constants_tell_two_steps_from_one_factory_apart() -> None:
    namespace: dict[str, Any] = {}
    exec("def make(t):\n    def train(x):\n        return x > t\n    return train\n", namespace)

    low, high = fingerprint(namespace["make"](0.1)), fingerprint(namespace["make"](0.9))

    assert describe_changes(low.parts, high.parts) == ["<exec>:make.<locals>.train.t changed"]


def test_is_project_code_keeps_libraries_and_shipyard_out(tmp_path: Path) -> None:
    repository = Path(fingerprint_module.__file__).resolve().parents[3]

    assert not is_project_code(np, [repository])  # site-packages, though under the root
    assert not is_project_code(np.mean, [repository])
    assert not is_project_code(fingerprint_module, [repository])
    assert not is_project_code(json.dumps, [Path("/")])
    assert not is_project_code(len, [Path("/")])


def test_describe_changes_names_each_kind_of_change() -> None:
    old = {"helpers:clean": "1", "features:SCALE": "2", "old:f": "3", "steps:train": "4"}
    new = {"helpers:clean": "5", "features:SCALE": "6", "utils:extra": "7", "steps:train": "4"}

    assert describe_changes(old, new) == [
        "features:SCALE changed",
        "helpers:clean changed",
        "old:f removed",
        "utils:extra added",
    ]


def test_describe_changes_is_empty_when_equal() -> None:
    assert describe_changes({"a:f": "1"}, {"a:f": "1"}) == []
    assert describe_changes({}, {}) == []


def test_the_digest_covers_the_parts_and_is_stable_in_process() -> None:
    first, second = fingerprint(_local_step), fingerprint(_local_step)

    assert first == second
    assert len(first.digest) == 64
    assert set(first.parts) == {f"{__name__}:_local_step", f"{__name__}:_local_helper"}


def _local_helper(x: int) -> int:
    return x + 1


def _local_step(x: int) -> int:
    return _local_helper(x) * 2


def _numpy_step(x: list[float]) -> float:
    return float(np.mean(np.asarray(x)) + np.linalg.norm(x))
