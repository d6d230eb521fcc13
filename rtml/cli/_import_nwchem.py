"""``rtml import-nwchem``: NWChem rt_tddft outputs (+ rt_restart snapshots) -> a trajectory."""

from __future__ import annotations

import logging
from pathlib import Path

from rtml import atomic_write, check_output_path
from rtml.chem import load_molecule, read_matching_geometry
from rtml.data import write_trajectory
from rtml.fields import parse_field
from rtml.tddft.nwchem import import_nwchem

log = logging.getLogger("rtml")


def cmd_import_nwchem(args) -> int:
    """Existing NWChem outputs (and restart snapshots) -> one trajectory file."""
    spec = load_molecule(args.molecule)
    positions = None
    if args.geometry:
        positions, _ = read_matching_geometry(spec, args.geometry)
    field = parse_field(args.field) if args.field else None
    out = Path(args.output)
    check_output_path(out, args.force)
    traj = import_nwchem(args.outputs, spec, restarts=args.restart or (), basis=args.basis,
                         xc=args.xc, field=field, positions_angstrom=positions,
                         geometry=args.nwchem_geometry)
    if out.exists():
        atomic_write(out, lambda tmp: write_trajectory(tmp, traj))
    else:
        write_trajectory(out, traj)
    log.info("imported %d frames (dt %g au, density: %s)", traj.n_steps, traj.dt,
             traj.extra_attrs["density_source"])
    print(out)
    return 0
