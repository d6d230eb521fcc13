"""rtml: real-time TDDFT trajectories turned into machine-learning datasets and models.

Units are atomic units everywhere except geometry input/output, which is in Ångström.
AO order is PySCF's.
"""

__version__ = "0.1.0"

from rtml._errors import RtmlError

__all__ = ["__version__", "RtmlError"]
