"""NWChem ``rt_tddft`` as an rtml propagation engine, and importer of NWChem outputs.

- :func:`write_rt_tddft_input`: the input deck for one molecule, basis, functional and field;
- :func:`run_nwchem`: runs it (``mpirun -np N`` for N > 1 ranks); :func:`run_nwchem_streaming`
  runs a restart job handing over the restart record of every step while it runs;
- :func:`parse_rt_output`, :func:`read_rt_restart`, :func:`parse_rt_restart`,
  :func:`write_rt_restart`: outputs and ``*.rt_restart`` files; :func:`hermitian_density`
  and :func:`density_precision`: what a density read from them is, and to what precision;
- :func:`propagate_nwchem`: one field, one NWChem run streaming P(t) of every step;
- :func:`simulate_nwchem`: molecule + fields -> :class:`rtml.data.Trajectory` records, one
  NWChem SCF and propagation job per field (built by :func:`rtml.tddft.trajectory_record`);
- :func:`import_nwchem`: existing outputs (+ restart files) -> a Trajectory (same builder).

The engine is chosen by name in :mod:`rtml.engines`, the one place engines are dispatched.

Where ``nwchem`` is not on PATH, :func:`nwchem_available` is False and running raises
:class:`NWChemUnavailable` ("nwchem not on PATH").
"""

from rtml.tddft.nwchem._deck import (
    GRID_KEYWORDS,
    XC_KEYWORDS,
    field_blocks,
    nwchem_xc,
    tmax_for_last_print,
    write_rt_tddft_input,
)
from rtml.tddft.nwchem._engine import (
    NWChemRun,
    ao_permutation,
    kick_density,
    propagate_nwchem,
)
from rtml.tddft.nwchem._parse import (
    RESTART_HEADER,
    RestartSnapshot,
    RTOutput,
    density_precision,
    hermitian_density,
    parse_rt_output,
    parse_rt_restart,
    read_rt_restart,
    restart_checksum,
    write_rt_restart,
)
from rtml.tddft.nwchem._import import import_nwchem
from rtml.tddft.nwchem._simulate import (ENGINE_NAME, PROPAGATOR_NAME, nwchem_version,
                                         simulate_nwchem)
from rtml.tddft.nwchem._run import (
    UNAVAILABLE_MESSAGE,
    NWChemError,
    NWChemUnavailable,
    nwchem_available,
    nwchem_command,
    nwchem_executable,
    run_nwchem,
    run_nwchem_streaming,
)

__all__ = [
    "write_rt_tddft_input", "field_blocks", "nwchem_xc", "tmax_for_last_print",
    "XC_KEYWORDS", "GRID_KEYWORDS",
    "run_nwchem", "run_nwchem_streaming", "nwchem_command", "nwchem_available",
    "nwchem_executable", "NWChemError", "NWChemUnavailable", "UNAVAILABLE_MESSAGE",
    "parse_rt_output", "read_rt_restart", "parse_rt_restart", "write_rt_restart",
    "restart_checksum", "hermitian_density", "density_precision", "RESTART_HEADER",
    "RTOutput", "RestartSnapshot",
    "simulate_nwchem", "import_nwchem", "nwchem_version", "ENGINE_NAME", "PROPAGATOR_NAME",
    "propagate_nwchem", "NWChemRun", "ao_permutation", "kick_density",
]
