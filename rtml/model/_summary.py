"""One-line descriptions of the model's modules (their ``repr``)."""

from __future__ import annotations

from torch import nn


def module_summary(module: nn.Module, name: str, *parts: str) -> str:
    """``name(part | part | ... | N weights)``, N the module's parameter count."""
    n_weights = sum(p.numel() for p in module.parameters())
    return f"{name}({' | '.join(parts)} | {n_weights} weights)"
