"""User-facing errors.

Anything raised as :class:`RtmlError` is a problem with the user's input or with a
calculation's outcome (SCF not converged, NaN during propagation). The CLI prints its
message on one line and exits with status 2; no traceback is shown.
"""


class RtmlError(Exception):
    """A problem the user can act on; its message names the problem in one line."""


class InputError(RtmlError, ValueError):
    """Malformed or impossible input (unknown molecule, bad field spec, dt <= 0, ...)."""


class ConfigError(InputError):
    """The workflow configuration is invalid; the message names each offending key."""


class ConvergenceError(RtmlError):
    """A self-consistent calculation (SCF, predictor-corrector) did not converge."""


class PropagationError(RtmlError):
    """The time propagation produced non-finite or unphysical values."""
