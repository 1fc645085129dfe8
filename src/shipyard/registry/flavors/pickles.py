"""Pickle files for the flavors that need them (scikit-learn, pyfunc without `save`).

Unpickling runs code chosen by whoever wrote the file, so shipyard unpickles only files from
the project's own artifact store, after their sha256 has been checked (see
`shipyard.registry.loaded`). Protocol 5 and a single `dumps` give the same bytes for the same
object, so saving a model twice stores one blob.
"""

from __future__ import annotations

import pickle
import pickletools
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput

PROTOCOL = 5
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def write(model: Any, path: Path) -> bytes:
    """Pickle `model` to `path`; the bytes written."""
    try:
        data = pickle.dumps(model, protocol=PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise InvalidInput(
            f"cannot pickle the {type(model).__name__} model ({error}); keep only picklable "
            "state on it (no open files, sessions, locks or lambdas) or give its class a "
            "save(folder) method"
        ) from error
    path.write_bytes(data)
    return data


def read(path: Path) -> Any:
    """The object pickled in `path`, a file already checked against its sha256."""
    try:
        return pickle.loads(path.read_bytes())  # a checked file from our own store
    except ModuleNotFoundError as error:
        raise InvalidInput(
            f"the pickled model in {path.name} needs the module {error.name!r}, which is not "
            "installed here; install the packages listed in the version's dependencies"
        ) from error


def modules_in(data: bytes) -> set[str]:
    """The modules a pickle imports when loaded (read from its opcodes, nothing executed)."""
    modules: set[str] = set()
    memo: dict[int, str | None] = {}
    recent: list[str | None] = []  # the strings pushed lately: STACK_GLOBAL's operands
    last: str | None = None
    for opcode, argument, _ in pickletools.genops(data):
        name = opcode.name
        if name in _STRING_OPS:
            last = str(argument)
            recent.append(last)
        elif name in _GET_OPS:
            last = memo.get(int(argument or 0))
            recent.append(last)
        elif name == "MEMOIZE":
            memo[len(memo)] = last
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(argument or 0)] = last
        elif name == "STACK_GLOBAL" and len(recent) >= 2 and recent[-2]:
            modules.add(str(recent[-2]))
        elif name in ("GLOBAL", "INST"):
            modules.add(str(argument).split(" ")[0])
        else:
            last = None
    return modules
