"""``rtml sample-geometries``: deterministic geometry samples of a molecule."""

from __future__ import annotations

from pathlib import Path

from rtml import atomic_directory, check_output_path
from rtml._errors import InputError
from rtml.chem import load_molecule, sample_geometries, write_geometry
from rtml.cli._threads import set_threads


def cmd_sample_geometries(args) -> int:
    """Write DIR/g00.xyz ... (g00 the equilibrium); print each path, id and description."""
    set_threads(args.threads)
    spec = load_molecule(args.molecule)
    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    out = Path(args.output_dir)
    check_output_path(out, args.force, rtml_files=r"g\d{2,}\.xyz")
    samples = sample_geometries(spec, args.n, seed=args.seed, hessian_xc=args.hessian_xc,
                                hessian_basis=args.hessian_basis)

    def write_files(directory: Path) -> None:
        for k, sample in enumerate(samples):
            info = {"name": spec.name, "charge": spec.charge, "multiplicity": spec.multiplicity,
                    "basis": spec.basis, "xc": spec.xc, "id": f"g{k:02d}",
                    "sample_id": sample.id, "kind": sample.kind,
                    "description": sample.description, "seed": args.seed}
            write_geometry(directory / f"g{k:02d}.xyz", spec.symbols, sample.positions_angstrom, info)

    atomic_directory(out, write_files)
    for k, sample in enumerate(samples):
        print(f"{out / f'g{k:02d}.xyz'}\t{sample.id}\t{sample.description}")
    return 0
