"""``rtml ladder``: the molecule ladder with basis sizes."""

from __future__ import annotations

from rtml.chem import build_mole, ladder


def cmd_ladder(args) -> int:
    """Print one row per molecule: formula, charge, multiplicity, electrons, basis, nbf, xc."""
    print(f"{'name':<6} {'formula':<8} {'charge':>6} {'mult':>4} {'electrons':>9} "
          f"{'basis':<8} {'nbf':>4} {'xc':<6} source")
    for spec in ladder():
        nbf = build_mole(spec, basis=args.basis).nao
        formula = _formula(spec.symbols)
        print(f"{spec.name:<6} {formula:<8} {spec.charge:>6d} {spec.multiplicity:>4d} "
              f"{spec.n_electrons:>9d} {args.basis or spec.basis:<8} {nbf:>4d} {spec.xc:<6} "
              f"{spec.source}")
    return 0


def _formula(symbols) -> str:
    """Chemical formula in order of first appearance (``['O', 'H', 'H']`` -> ``OH2``)."""
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in counts.items())
