r"""The layout of rtml's files in one place: the trajectory HDF5 file and the dataset store.

Trajectory file (``format = "rtml-trajectory"``)
    :data:`DATASETS` has one :class:`Dataset` row per quantity of a trajectory file (its
    HDF5 path, :class:`~rtml.data.Trajectory` attribute, symbolic shape, kind, units,
    description, required or optional) and :data:`ROOT_ATTRIBUTES` one :class:`Attribute`
    row per root attribute. The writer and the reader (:mod:`rtml.data._hdf5`) and the
    validator (:mod:`rtml.data._validate`) are loops over these rows.

Dataset store (``format = "rtml-dataset"``)
    Each row also says how its quantity appears in a molecule group of the store
    (:class:`StoreVar`: array name, data variable or coordinate, per trajectory or static,
    what a group stores for files without it). :data:`PER_TRAJECTORY` and :data:`STATIC`
    are the resolved arrays of a group (:class:`Variable`: name, dims, dtype, units,
    long_name), together with the columns the assembly computes from a file's metadata
    (trajectory id, field parameters, ...). :mod:`rtml.data._assembly` writes them,
    :mod:`rtml.data._card` describes them.

Adding a dataset is one :class:`Dataset` row plus its producer, the code that computes the
value and passes it into the record (``Trajectory(..., datasets={attr: value})``; the row's
``attr`` then also reads and sets it as ``traj.<attr>``). HDF5 write and read, validation
(presence, dtype, shape, finiteness), the store (array, dims, chunks, NaN rows for files
without it) and the xarray view follow from the row.

The tables are public API for programs that read the files: :mod:`rtml.data` exports
:data:`DATASETS`, :data:`ROOT_ATTRIBUTES`, :data:`PER_TRAJECTORY`, :data:`STATIC`,
:data:`INDEX_COLUMNS` and :func:`datasets_table` as ``TRAJECTORY_DATASETS``,
``TRAJECTORY_ROOT_ATTRIBUTES``, ``STORE_PER_TRAJECTORY_ARRAYS``, ``STORE_STATIC_ARRAYS``,
``STORE_INDEX_COLUMNS`` and ``trajectory_datasets_table``.

Symbolic shapes use ``n_atoms, n_basis, n_steps, n_spin`` (evaluated by
:func:`evaluate_shape`); the store calls these axes ``atom``, ``ao_i, ao_j`` (the AO axes of a
matrix; a per-AO vector such as the basis labels becomes one coordinate on each),
``time`` and ``spin``, plus ``xyz`` for a length-3 axis and ``traj_id`` for the trajectories
of a group. ``traj_id``, ``time``, ``xyz`` and ``spin`` are labelled (dimension
coordinates), so plain xarray selects by them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rtml._errors import InputError
from rtml.units import UNITS

FORMAT_NAME = "rtml-trajectory"
FORMAT_VERSION = 1

STORE_FORMAT_NAME = "rtml-dataset"
#: 2: labelled dims (``traj_id``, exact ``time`` and ``step``, ``xyz``, ``spin``), basis labels
#: on ``ao_i``/``ao_j``, relative ``source_file`` with ``source_sha256``, consolidated
#: metadata, the dataset card beside the store. Version 1 stores are refused (assemble again).
STORE_FORMAT_VERSION = 2

#: Conventions recorded beside the UNITS dict in the ``units`` attributes (file and store).
UNITS_NOTE = (
    "positions in angstrom, everything else atomic units; "
    "AO order is PySCF's (p: px,py,pz)"
)

#: Dimensions of a trajectory, the names symbolic shapes use.
DIMS = ("n_atoms", "n_basis", "n_steps", "n_spin")

#: HDF5 descriptions of integer-valued datasets end with this (they are stored as float64).
_INTEGER_NOTE = " (integer-valued, stored as float64)"


class StoreVar(NamedTuple):
    """How a trajectory-file quantity appears in a molecule group of the dataset store.

    ``units`` and ``long_name`` default to the file's units and description. ``static``:
    one array per group, without the ``traj_id`` axis, that every file of the group must
    match (``mismatch`` is the error's text, formatted with ``got``, ``want``, ``mol``,
    ``origin``). ``if_absent`` (optional quantities): ``"nan"``, the array is in every
    group and NaN in the rows of files without it; ``"group"``, the array is stored only in
    groups whose files all have it (group attribute ``has_{name}``, a file that disagrees
    is an error naming ``label``).
    """

    name: str
    data: bool = False                # a data variable; else an xarray coordinate
    static: bool = False
    units: str | None = None
    long_name: str | None = None
    if_absent: str = "nan"
    label: str = ""
    mismatch: str = "{name} differs from molecule group '{mol}' ({origin})"


class Dataset(NamedTuple):
    """One quantity of a trajectory file.

    ``kind``: ``"float"`` (float64), ``"int"`` (integer values stored as float64, read back
    as int64) or ``"complex"`` (stored as the float64 pair ``{path}_real``,
    ``{path}_imag``, described by ``part_descriptions``; ``description`` is the
    quantity's). A shape that starts with ``n_steps`` is per frame (a ``time`` axis in the
    store), any other per trajectory. ``required=False``: written when the record has it,
    read back as ``None`` when the file does not. ``frame_chunks``: a large per-frame
    array, chunked one frame per HDF5 chunk and, in the store, sharded one trajectory per
    shard with inner chunks along time.
    """

    path: str
    attr: str
    shape: tuple[str | int, ...]
    kind: str
    units: str
    description: str
    store: StoreVar
    required: bool = True
    part_descriptions: tuple[str, str] = ("", "")
    frame_chunks: bool = False

    @property
    def h5_names(self) -> tuple[str, ...]:
        """The HDF5 dataset(s) holding the quantity."""
        if self.kind == "complex":
            return (f"{self.path}_real", f"{self.path}_imag")
        return (self.path,)

    @property
    def h5_descriptions(self) -> tuple[str, ...]:
        """The ``description`` attribute of each of :attr:`h5_names`."""
        if self.kind == "complex":
            return self.part_descriptions
        return (self.description + (_INTEGER_NOTE if self.kind == "int" else ""),)


class Attribute(NamedTuple):
    """One root attribute of a trajectory file.

    ``kind``: ``"str"``, ``"int"``, ``"float"``, ``"json"`` (a JSON string, a dict in the
    record) or ``"vector"`` (float64 array of ``shape``). ``source``: the
    :class:`~rtml.data.Trajectory` attribute it is written from and read into; ``""`` for
    the attributes the writer derives (dimensions from the array shapes, ``units``,
    ``format``, ``format_version``).
    """

    name: str
    kind: str
    source: str
    units: str
    description: str
    shape: tuple[int, ...] = ()
    store: StoreVar | None = None


class Variable(NamedTuple):
    """One array of a molecule group of the store; ``dtype`` is ``"float64"``, ``"int64"``,
    ``"string"`` or ``"rho"`` (the store's rho dtype). ``source`` is the file quantity it
    copies (the record's attribute ``attr``), ``None`` for the columns the assembly
    computes from a file's metadata; the other fields are its :class:`StoreVar`'s."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    units: str
    long_name: str
    data: bool = False
    static: bool = False
    source: Dataset | Attribute | None = None
    attr: str = ""
    if_absent: str = "nan"
    label: str = ""
    frame_chunks: bool = False


def _dataset(path, attr, shape, kind, units, description, store=None, **kwargs) -> Dataset:
    return Dataset(path, attr, shape, kind, units, description, store or StoreVar(attr),
                   **kwargs)


def _ground_state_matrix(name, units, description, store_name, long_name) -> Dataset:
    """An optional real AO matrix of the geometry's SCF ground state, per spin channel:
    ``ground_state/{name}``, shape (n_spin, nbf, nbf), stored as ``store_name`` (NaN rows in
    the store for files without it)."""
    return _dataset(f"ground_state/{name}", f"ground_state_{name}",
                    ("n_spin", "n_basis", "n_basis"), "float", units, description,
                    StoreVar(store_name, long_name=long_name), required=False)


_FRAME_MATRIX = ("n_steps", "n_spin", "n_basis", "n_basis")
_AO_LABELS = "AO labels (atom, l, m) differ from molecule group '{mol}' ({origin})"

#: Every quantity of a trajectory file, in file order (required ones first).
DATASETS: tuple[Dataset, ...] = (
    _dataset("geometry/positions", "positions_angstrom", ("n_atoms", 3), "float",
             UNITS["positions"], "Cartesian nuclear positions", StoreVar("positions")),
    _dataset("geometry/atomic_numbers", "atomic_numbers", ("n_atoms",), "int", "dimensionless",
             "nuclear charges Z",
             StoreVar("atomic_numbers", static=True, units="1",
                      mismatch="atoms {got} differ from molecule group '{mol}' ({want}, "
                               "{origin})")),
    _dataset("basis/atom_index", "basis_atom_index", ("n_basis",), "int", "dimensionless",
             "0-based atom of each AO, PySCF AO order",
             StoreVar("basis_atom_index", static=True, units="1",
                      long_name="0-based atom of each AO (PySCF AO order)",
                      mismatch=_AO_LABELS)),
    _dataset("basis/angular_momentum", "basis_angular_momentum", ("n_basis",), "int",
             "dimensionless", "angular momentum l of each AO",
             StoreVar("basis_angular_momentum", static=True, units="1", mismatch=_AO_LABELS)),
    _dataset("basis/magnetic_quantum", "basis_magnetic_quantum", ("n_basis",), "int",
             "dimensionless",
             "real-spherical-harmonic m of each AO; l=1 is (px,py,pz) = m (+1,-1,0)",
             StoreVar("basis_magnetic_quantum", static=True, units="1",
                      long_name="real-spherical-harmonic m of each AO; p shells (px, py, pz) "
                                "= m (+1, -1, 0)",
                      mismatch=_AO_LABELS)),
    _dataset("matrices/overlap", "overlap", ("n_basis", "n_basis"), "float", UNITS["overlap"],
             "AO overlap S_uv = <u|v>", StoreVar("overlap", long_name="AO overlap S")),
    _dataset("matrices/core_hamiltonian", "core_hamiltonian", ("n_basis", "n_basis"), "float",
             UNITS["core_hamiltonian"], "AO core Hamiltonian h = T + V_nuc"),
    _dataset("dynamics/density", "density", _FRAME_MATRIX, "complex", UNITS["density"],
             "AO density matrix P(t) (n_spin=1: total; 2: alpha, beta)",
             StoreVar("rho", data=True), frame_chunks=True,
             part_descriptions=("real part of the AO density P(t) (n_spin=1: total; 2: "
                                "alpha, beta)", "imaginary part of the AO density P(t)")),
    _dataset("dynamics/field", "field", ("n_steps", 3), "float", UNITS["field"],
             "applied electric field E(t) at each saved time (zero for a delta kick)",
             StoreVar("field", data=True,
                      long_name="applied electric field E(t) (zero for a delta kick, applied "
                                "before the first frame)")),
    _dataset("dynamics/time", "time", ("n_steps",), "float", UNITS["time"],
             "time t of each saved frame",
             StoreVar("time", static=True, long_name="time of each saved frame",
                      mismatch="time grid differs from molecule group '{mol}' ({origin}); "
                               "a group holds one time grid")),
    _dataset("dynamics/energy", "energy", ("n_steps",), "float", UNITS["energy"],
             "molecular energy E[P(t)] (electronic + nuclear repulsion), without the field "
             "term", StoreVar("energy", data=True)),
    _dataset("dynamics/dipole", "dipole", ("n_steps", 3), "float", UNITS["dipole"],
             "total dipole (electrons + nuclei) about the dipole_origin root attribute",
             StoreVar("dipole", data=True,
                      long_name="total dipole (electrons + nuclei) about dipole_origin")),
    _dataset("dynamics/fock", "fock", _FRAME_MATRIX, "complex", UNITS["energy"],
             "AO Fock matrix F[P(t)] without the field term (n_spin=2: alpha, beta), as "
             "accepted by the propagator for the frame",
             StoreVar("fock", data=True, if_absent="group", label="Fock frames"),
             required=False, frame_chunks=True,
             part_descriptions=(
                 "real part of the AO Fock matrix F[P(t)] without the field term (n_spin=2: "
                 "alpha, beta); the matrix the propagator accepted for the frame (full build "
                 "or linear-response corrector prediction within its tolerance; with "
                 "settings carry_model, the linear model's prediction from an earlier build)",
                 "imaginary part of the AO Fock matrix F[P(t)] (antisymmetric: exact "
                 "exchange of Im P)")),
    _dataset("dynamics/frame_source", "frame_source", ("n_steps",), "int", "dimensionless",
             "what produced each frame (hybrid engine): 0 the RT-TDDFT engine (the first "
             "frame and every re-anchoring segment), 1 the model",
             StoreVar("frame_source", data=True, if_absent="group", label="frame sources",
                      units="1", long_name="what produced each frame: 0 RT-TDDFT engine, "
                                           "1 model (hybrid engine)"),
             required=False),
    _ground_state_matrix("density", UNITS["density"],
                         "SCF ground-state AO density P0 of this geometry, from the converged "
                         "orbitals (idempotent; n_spin=1: total)",
                         "rho_ground", "SCF ground-state AO density P0 of the geometry "
                                       "(idempotent; NaN: not recorded)"),
    _ground_state_matrix("fock", UNITS["energy"],
                         "F0 = F[P0], the ground-state AO Fock matrix built with the same Fock "
                         "build as the dynamics (no field term)",
                         "fock_ground", "F0 = F[P0], ground-state AO Fock matrix, same Fock "
                                        "build as fock (NaN: not recorded)"),
)

def _attribute_rows(table: str) -> tuple[Attribute, ...]:
    """Root attributes from a text table, one per line: ``name | kind | source |
    description`` (empty ``source``: derived by the writer); units from
    :data:`rtml.units.UNITS` by name (none for the rest)."""
    rows = []
    for line in table.strip().splitlines():
        name, kind, source, description = (cell.strip() for cell in line.split("|"))
        rows.append(Attribute(name, kind, source, UNITS.get(name, ""), description))
    return tuple(rows)


#: Every root attribute of a trajectory file, in write order; any other root attribute is
#: a ``Trajectory.extra_attrs`` entry.
ROOT_ATTRIBUTES: tuple[Attribute, ...] = (
    *_attribute_rows("""
        molecule       | str   | molecule     | ladder name or geometry file stem
        n_atoms        | int   |              | number of atoms
        n_electrons    | int   | n_electrons  | number of electrons
        n_basis        | int   |              | number of AOs (nbf)
        n_steps        | int   |              | number of saved frames
        n_spin         | int   |              | density channels: 1 total, 2 alpha and beta
        dt             | float | dt           | propagation time step
        save_every     | int   | save_every   | propagation steps per saved frame
        charge         | int   | charge       | molecular charge
        multiplicity   | int   | multiplicity | spin multiplicity 2S+1
        xc             | str   | xc           | PySCF functional name (hf: RT-TDHF)
        basis          | str   | basis        | basis set name
        propagator     | str   | propagator   | propagator name
        field_spec     | json  | field_spec   | the field's JSON description (Field.to_json_dict())
    """),
    Attribute("dipole_origin", "vector", "dipole_origin_bohr", UNITS["dipole_origin"],
              "origin of the dipole operator: the centre of nuclear charge", shape=(3,),
              store=StoreVar("dipole_origin", long_name="origin of the dipole operator "
                                                        "(centre of nuclear charge)")),
    *_attribute_rows(f"""
        units          | json  |              | JSON of rtml.units.UNITS plus a note on conventions
        provenance     | json  | provenance   | rtml version and commit, PySCF version, inputs hash
        format         | str   |              | file format name, {FORMAT_NAME!r}
        format_version | int   |              | file format version
    """),
)

ROOT_ATTRIBUTE_NAMES = tuple(a.name for a in ROOT_ATTRIBUTES)

_BY_ATTR = {d.attr: d for d in DATASETS}


def dataset(attr: str) -> Dataset:
    """The :data:`DATASETS` row of the Trajectory attribute ``attr`` (``"density"``)."""
    return _BY_ATTR[attr]


def evaluate_shape(shape: tuple[str | int, ...], dims: dict[str, int]) -> tuple[int, ...]:
    """A symbolic shape with ``dims`` (keys :data:`DIMS`) substituted."""
    return tuple(d if isinstance(d, int) else int(dims[d]) for d in shape)


def datasets_table() -> str:
    """:data:`DATASETS` as the reStructuredText table of the file-format docs (``nbf`` for
    ``n_basis``; ``*`` marks optional datasets)."""
    rows = []
    for d in DATASETS:
        shape = "(" + ", ".join(str(s).replace("n_basis", "nbf") for s in d.shape)
        shape += ",)" if len(d.shape) == 1 else ")"
        units = d.units + (" (integers)" if d.kind == "int" else "")
        rows += [(f"``{name}``" + ("" if d.required else " *"), shape, units)
                 for name in d.h5_names]
    widths = [max(len(r[i]) for r in rows + [("dataset", "shape", "units")]) for i in range(3)]
    rule = "  ".join("=" * w for w in widths)
    header = "  ".join(h.ljust(w) for h, w in zip(("dataset", "shape", "units"), widths))
    lines = [rule, header.rstrip(), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines + [rule])


# --------------------------------------------------------------------------- the store

#: Allowed storage dtypes of ``rho`` (and of every complex array).
RHO_DTYPES = ("complex128", "complex64")

#: Zstandard level used for every store array (see :mod:`rtml.data._assembly`).
ZSTD_LEVEL = 3

AO_ORDER_CONVENTION = (
    "PySCF AO order; spherical p shells are (px, py, pz) = m (+1, -1, 0); d and higher "
    "shells run m = -l..l"
)
DIPOLE_ORIGIN_CONVENTION = (
    "dipole about the centre of nuclear charge of each geometry (dipole_origin, bohr); "
    "mu = -Tr(P D) + sum_A Z_A (R_A - O)"
)
DENSITY_CONVENTION = (
    "rho is the AO density matrix P(t); n_spin = 1: total density (Tr PS = N), "
    "n_spin = 2: alpha and beta densities"
)

#: Root-group name of the index table (a molecule may not use it).
INDEX_GROUP = "index"

#: Index columns: (name, numpy kind) -- ``str`` or an integer dtype.
INDEX_COLUMNS = (
    ("traj_id", str), ("molecule", str), ("row", "int64"), ("n_basis", "int64"),
    ("n_spin", "int64"), ("n_time", "int64"), ("geometry_id", str), ("field_kind", str),
    ("field_spec", str), ("inputs_sha256", str), ("source_file", str), ("source_sha256", str),
)

#: The dim of a group's trajectories, labelled by their ids (``ds.sel(traj_id=...)``).
TRAJ_DIM = "traj_id"

#: Labels of the ``spin`` axis by ``n_spin``.
SPIN_LABELS = {1: ("total",), 2: ("alpha", "beta")}

#: Store coordinate suffix of each per-AO basis label of the file: ``ao_i_atom``,
#: ``ao_j_atom``, ...; a per-AO vector added to the schema later keeps its own name.
_AO_LABEL_SUFFIX = {"basis_atom_index": "atom", "basis_angular_momentum": "l",
                    "basis_magnetic_quantum": "m"}

#: Group attributes that every file of a molecule must share (besides the static arrays);
#: ``n_time`` is the files' ``n_steps``.
GROUP_SCALARS = ("n_basis", "n_spin", "n_atoms", "n_time", "n_electrons", "charge",
                 "multiplicity", "xc", "basis", "dt", "save_every", "propagator")


def _column(name, dims, dtype, units, long_name) -> Variable:
    """A per-trajectory column the assembly computes from a file's metadata."""
    return Variable(name, (TRAJ_DIM,) + dims, dtype, units, long_name)


def _label(name, dims, dtype, units, long_name) -> Variable:
    """A static coordinate the assembly computes from a group's scalars (axis labels)."""
    return Variable(name, dims, dtype, units, long_name, static=True)


#: The arrays of a molecule group in the order a group lists them (its ``coordinates``
#: attribute, the dataset card): file quantities by Trajectory attribute, and the columns
#: computed from a file's metadata. Quantities added to DATASETS later and not named here
#: follow, in their DATASETS order.
_LAYOUT = (
    "density", "fock", "dipole", "energy", "field",
    Variable("traj_id", (TRAJ_DIM,), "string", "", "stable trajectory id {molecule}/"
             "{geometry_id}/{file stem}"),
    _column("geometry_id", (), "string", "", "geometry sample id (eq: equilibrium)"),
    _column("field_kind", (), "string", "", "field type: none, kick, gaussian, resonant"),
    _column("field_spec", (), "string", "", "canonical field spec string (rtml.fields)"),
    _column("field_amplitude", (), "float64", "atomic_unit_of_electric_field",
            "E0 (kick: kick strength kappa, field x time)"),
    _column("field_omega", (), "float64", UNITS["frequency"], "carrier frequency (NaN: none)"),
    _column("field_polarization", ("xyz",), "float64", "1", "unit polarisation vector"),
    _column("field_t0", (), "float64", UNITS["time"], "Gaussian pulse centre (NaN: none)"),
    _column("field_sigma", (), "float64", UNITS["time"], "Gaussian pulse width (NaN: none)"),
    _column("field_duration", (), "float64", UNITS["time"], "resonant drive length (NaN: none)"),
    _column("kick_strength", (), "float64", "atomic_unit_of_electric_field*atomic_unit_of_time",
            "delta-kick strength kappa (0: no kick)"),
    "positions_angstrom", "dipole_origin_bohr", "overlap", "core_hamiltonian",
    "ground_state_density", "ground_state_fock",
    _column("ground_state_energy", (), "float64", UNITS["energy"],
            "SCF ground-state energy (NaN: not recorded)"),
    _column("ground_state_dipole", ("xyz",), "float64", UNITS["dipole"],
            "SCF ground-state dipole about dipole_origin (NaN: not recorded)"),
    _column("inputs_sha256", (), "string", "", "SHA-256 of all inputs of the trajectory "
            "(provenance)"),
    _column("source_file", (), "string", "", "HDF5 file the trajectory was assembled from, "
            "relative to the directory holding the store"),
    _column("source_sha256", (), "string", "", "SHA-256 of the bytes of source_file"),
    _column("provenance", (), "string", "", "provenance of the trajectory file (JSON)"),
    "time",
    _label("step", ("time",), "int64", "1", "propagation step of each saved frame; time = "
           "step * dt exactly (dt as its shortest decimal, rounded once to float64)"),
    _label("xyz", ("xyz",), "string", "", "Cartesian component"),
    _label("spin", ("spin",), "string", "", "density channel: total (n_spin = 1) or alpha, "
           "beta (n_spin = 2)"),
    "atomic_numbers", "basis_atom_index", "basis_angular_momentum", "basis_magnetic_quantum",
)

_STORE_AXES = {"n_steps": "time", "n_spin": "spin", "n_atoms": "atom", 3: "xyz"}
_STORE_DTYPES = {"float": "float64", "int": "int64", "complex": "rho"}


def _store_dims(shape: tuple[str | int, ...], static: bool,
                ao_axes=("ao_i", "ao_j")) -> tuple[str, ...]:
    """Store dims of a file quantity of symbolic ``shape``: ``n_basis`` takes the axes
    ``ao_axes`` in turn; a per-trajectory array leads with ``traj_id``."""
    ao = iter(ao_axes)
    dims = tuple(next(ao) if d == "n_basis" else _STORE_AXES[d] for d in shape)
    return dims if static else (TRAJ_DIM,) + dims


def _variables(source: Dataset | Attribute) -> tuple[Variable, ...]:
    """The store arrays of a file quantity or root attribute (its ``store`` spec resolved):
    one, or for a per-AO vector one coordinate on each AO axis (``ao_i_atom``,
    ``ao_j_atom``), so the basis labels travel with the matrices that ``sel`` cuts."""
    spec = source.store
    if isinstance(source, Dataset):
        dtype, attr, frame_chunks = _STORE_DTYPES[source.kind], source.attr, source.frame_chunks
    else:  # a vector root attribute
        dtype, attr, frame_chunks = "float64", source.source, False
    names, axes = [spec.name], [("ao_i", "ao_j")]
    if tuple(source.shape) == ("n_basis",):
        suffix = _AO_LABEL_SUFFIX.get(attr, spec.name)
        names, axes = [f"ao_i_{suffix}", f"ao_j_{suffix}"], [("ao_i",), ("ao_j",)]
    return tuple(
        Variable(name, _store_dims(source.shape, spec.static, ao_axes), dtype,
                 source.units if spec.units is None else spec.units,
                 source.description if spec.long_name is None else spec.long_name,
                 data=spec.data, static=spec.static, source=source, attr=attr,
                 if_absent=spec.if_absent, label=spec.label, frame_chunks=frame_chunks)
        for name, ao_axes in zip(names, axes))


def _store_layout() -> tuple[Variable, ...]:
    """:data:`_LAYOUT` resolved, followed by the file quantities it does not name."""
    sources = {s.attr if isinstance(s, Dataset) else s.source: s
               for s in DATASETS + ROOT_ATTRIBUTES if s.store is not None}
    later = [attr for attr in sources if attr not in _LAYOUT]
    return tuple(var for v in list(_LAYOUT) + later
                 for var in (_variables(sources[v]) if isinstance(v, str) else (v,)))


_GROUP_ARRAYS = _store_layout()

#: Arrays of a molecule group, in group order: per trajectory (leading axis ``traj_id``) and
#: static (one per group: copied from the files, or axis labels computed from the group's
#: scalars, ``source`` None).
PER_TRAJECTORY: tuple[Variable, ...] = tuple(v for v in _GROUP_ARRAYS if not v.static)
STATIC: tuple[Variable, ...] = tuple(v for v in _GROUP_ARRAYS if v.static)

#: Per-trajectory arrays a group stores only if all its files have them (``if_absent =
#: "group"``; group attribute ``has_{name}``).
GROUP_OPTIONAL: tuple[Variable, ...] = tuple(v for v in PER_TRAJECTORY if v.if_absent == "group")


def check_is_store(store_path: Path) -> None:
    """Raise :class:`InputError` unless ``store_path`` is an rtml dataset store this rtml
    reads (root ``zarr.json`` with the store's ``format`` and a supported version)."""
    meta = store_path / "zarr.json"
    if not store_path.exists():
        raise InputError(f"dataset store '{store_path}' does not exist")
    if not store_path.is_dir() or not meta.is_file():
        raise InputError(f"'{store_path}' exists and is not an rtml dataset store")
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        attrs = {}
    if attrs.get("format") != STORE_FORMAT_NAME:
        raise InputError(f"'{store_path}' exists and is not an rtml dataset store "
                         f"(format attribute {attrs.get('format')!r})")
    version = attrs.get("format_version")
    if version != STORE_FORMAT_VERSION:
        raise InputError(f"'{store_path}' is an rtml-dataset of format_version {version!r}; this "
                         f"rtml reads and writes version {STORE_FORMAT_VERSION}: assemble the "
                         "store again from its trajectory files into a new path")


def strings(values) -> list[str]:
    """A string array read from the store (any shape) as a flat list of ``str``."""
    return [str(v) for v in np.asarray(values).reshape(-1)]
