r"""Read an rtml dataset store with plain xarray and plot one trajectory.

Needs only numpy, xarray (with zarr) and matplotlib: rtml is not imported. Usage::

    python examples/read_store.py results/dataset.zarr h2o             # its first kick
    python examples/read_store.py results/dataset.zarr h2o --traj-id h2o/eq/t00-kick_0.001_x \
        --time 0.6 -o h2o.png                                          # and mu(0.6 a.u.)

The store has one group per molecule; its trajectories are labelled by ``traj_id``
(``ds.sel(traj_id=...)``), ``time`` is exact, in atomic units (``sel(time=0.6)``; the
integer ``step`` is a coordinate too), ``dipole`` (traj_id, time, xyz) in e·bohr with
``xyz`` labelled x, y, z. For a kick trajectory the script also plots the dipole strength
function

.. math:: S(\omega) = \frac{2\omega}{\pi\kappa}\,
          \mathrm{Im}\int_0^T \mathbf e\cdot[\boldsymbol\mu(t) - \boldsymbol\mu(0)]\,
          e^{i\omega t - \gamma t}\,dt

(γ = 4/T damping, ħ = 1), per eV: its peaks are the molecule's bright excitations, and
``rtml spectrum`` computes the same function.
"""

import argparse

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

HARTREE_EV = 27.21138602  # eV per Hartree (CODATA 2014, as rtml.units)


def select_trajectory(ds: xr.Dataset, traj_id: str | None) -> xr.Dataset:
    """The trajectory labelled ``traj_id`` (default: the first kick) of one molecule group."""
    if traj_id is None:
        kicks = ds["traj_id"].values[ds["field_kind"].values == "kick"].tolist()
        if not kicks:
            raise SystemExit("no kick trajectory in this group; name one with --traj-id")
        traj_id = kicks[0]
    try:
        return ds.sel(traj_id=traj_id).load()
    except KeyError:
        ids = ", ".join(ds["traj_id"].values.tolist())
        raise SystemExit(f"no trajectory {traj_id!r}; this group holds: {ids}") from None


def dipole_at(one: xr.Dataset, time_au: float) -> list[float]:
    """The dipole (x, y, z) of one trajectory at the saved time ``time_au`` (exact label)."""
    try:
        return one["dipole"].sel(time=time_au).values.tolist()
    except KeyError:
        time = one["time"].values
        raise SystemExit(f"no frame at t = {time_au} a.u.; frames run {time[0]} .. {time[-1]} "
                         f"every {time[1] - time[0]:g}") from None


def kick_spectrum(time_au, dipole, kappa, polarization, emax_ev=30.0):
    """Dipole strength function of a kick along ``polarization``.

    Args:
        time_au: (nt,) uniform times, a.u., from the kick.
        dipole: (nt, 3) dipole, e·bohr.
        kappa: kick strength, a.u.
        polarization: (3,) kick direction.

    Returns:
        (energies in eV, S in 1/eV), both (nw,), for 0 < E <= ``emax_ev``.
    """
    dt = time_au[1] - time_au[0]
    e = polarization / np.linalg.norm(polarization)
    gamma = 4.0 / (time_au[-1] - time_au[0])
    signal = (dipole - dipole[0]) @ e * np.exp(-gamma * (time_au - time_au[0]))
    signal[[0, -1]] *= 0.5  # trapezoid rule
    n_fft = 1 << int(np.ceil(np.log2(max(2 * len(signal), 2 * np.pi / (dt * 2e-4)))))  # pad
    alpha = dt / kappa * np.conj(np.fft.rfft(signal, n=n_fft))  # FFT uses exp(-i w t)
    omega = 2 * np.pi * np.fft.rfftfreq(n_fft, d=dt)  # Hartree
    strength = 2 * omega / np.pi * alpha.imag  # 1/Hartree
    keep = (omega > 0) & (omega * HARTREE_EV <= emax_ev)
    return omega[keep] * HARTREE_EV, strength[keep] / HARTREE_EV


def plot(one: xr.Dataset, output: str) -> float | None:
    """Dipole (and kick spectrum) of one trajectory to ``output``; the brightest peak, eV."""
    time = one["time"].values
    dipole = one["dipole"].values
    is_kick = str(one["field_kind"].values) == "kick"
    fig = Figure(figsize=(11 if is_kick else 6, 4), layout="tight")
    axes = fig.subplots(1, 2 if is_kick else 1, squeeze=False)
    for k, label in enumerate("xyz"):
        axes[0, 0].plot(time, dipole[:, k] - dipole[0, k], label=f"$\\mu_{label}$")
    axes[0, 0].set(xlabel="time (a.u.)", ylabel="$\\mu(t) - \\mu(0)$ (e bohr)",
                   title=str(one["traj_id"].values))
    axes[0, 0].legend()
    peak = None
    if is_kick:
        energy, strength = kick_spectrum(time, dipole, float(one["kick_strength"].values),
                                         one["field_polarization"].values)
        peak = float(energy[np.argmax(strength)])
        axes[0, 1].plot(energy, strength)
        axes[0, 1].axvline(peak, ls=":", c="grey")
        axes[0, 1].set(xlabel="energy (eV)", ylabel="S (1/eV)", title="kick spectrum")
    fig.savefig(output, dpi=100)
    return peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", help="dataset store, e.g. results/dataset.zarr")
    parser.add_argument("molecule", help="molecule group, e.g. h2o")
    parser.add_argument("--traj-id", help="trajectory label (default: the first kick)")
    parser.add_argument("--time", type=float, help="also print the dipole at this saved time "
                                                   "(a.u.)")
    parser.add_argument("-o", "--output", default="trajectory.png", help="PNG file")
    args = parser.parse_args(argv)
    ds = xr.open_zarr(args.store, group=args.molecule)
    one = select_trajectory(ds, args.traj_id)
    mu = None if args.time is None else dipole_at(one, args.time)
    peak = plot(one, args.output)
    print(f"{one['traj_id'].values}: {one.sizes['time']} frames -> {args.output}")
    if mu is not None:
        print(f"dipole at t = {args.time:g} a.u.: {' '.join(f'{v:.10e}' for v in mu)} e bohr")
    if peak is not None:
        print(f"brightest peak: {peak:.3f} eV")


if __name__ == "__main__":
    main()
