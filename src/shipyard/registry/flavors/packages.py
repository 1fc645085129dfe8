"""Which installed distributions, at which versions, provide the modules a model needs.

The answer names distributions as pip knows them ("scikit-learn" for `sklearn`,
"xgboost-cpu" where that build provides `xgboost`), so an environment can be rebuilt from it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable


@functools.cache
def _providers() -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    # Scanning every installed distribution takes ~0.3 s: once per process is enough.
    return dict(packages_distributions())


def distributions_for(modules: Iterable[str]) -> dict[str, str]:
    """{distribution: version} for the top-level packages of `modules`; stdlib left out."""
    from importlib.metadata import PackageNotFoundError, version

    roots = {module.split(".")[0] for module in modules}
    roots -= set(sys.stdlib_module_names) | {"builtins", "__main__", ""}
    found: dict[str, str] = {}
    for root in roots:
        for distribution in _providers().get(root, []):
            try:
                found[distribution] = version(distribution)
            except PackageNotFoundError:  # metadata left behind by an uninstall
                continue
    return dict(sorted(found.items()))
