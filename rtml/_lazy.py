"""Public names of a package resolved from its private modules on first use (PEP 562).

A package front (``rtml/tddft/__init__.py``) that imported every implementation module would
make ``from rtml.tddft import absorption_spectrum`` load PySCF, and ``rtml train --help``
load torch. Instead the front lists where each public name lives; the module is imported the
first time one of its names is asked for, and the name is then cached on the package.

Examples:
    >>> __getattr__, __dir__ = lazy_exports(__name__, {"_spectrum": ["absorption_spectrum"]})
    ... # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, modules: dict[str, list[str]]):
    """``(__getattr__, __dir__)`` for ``package`` exporting ``modules[m]`` from ``package.m``.

    Args:
        package: the package's ``__name__``.
        modules: private module name (``"_spectrum"``) -> the public names it provides.

    Raises:
        ValueError: a name listed under two modules.
    """
    where: dict[str, str] = {}
    for module, names in modules.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}.{name} listed under {where[name]} and {module}")
            where[name] = module

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
