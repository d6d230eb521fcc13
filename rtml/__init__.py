"""rtml: real-time TDDFT trajectories turned into machine-learning datasets and models.

Units are atomic units everywhere except geometry input/output, which is in Ångström.
AO order is PySCF's.
"""

__version__ = "0.1.0"

from rtml._atomic import (atomic_directory, atomic_write, atomic_write_text, check_output_path,
                          remove_stale_temporaries)
from rtml._errors import ConfigError, ConvergenceError, InputError, PropagationError, RtmlError
from rtml._provenance import inputs_hash, provenance

__all__ = ["__version__", "RtmlError", "InputError", "ConfigError", "ConvergenceError",
           "PropagationError", "inputs_hash", "provenance", "atomic_write", "atomic_write_text", "atomic_directory", "check_output_path",
           "remove_stale_temporaries"]
