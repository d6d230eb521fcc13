"""The commit record of the dataset store: which rows are committed, and the index table.

One write commits an assembly: the root group's attributes (one ``zarr.json``, which zarr
replaces atomically) hold ``n_committed`` = ``{molecule: rows}`` together with
``molecules``, ``n_trajectories``, ``n_trajectories_per_molecule`` and ``dataset_sha256``,
so these can never disagree. Rows of a molecule group at or beyond its count are
uncommitted (an assembly in progress, failed or killed) and every reader ignores them.

The group attribute ``n_committed`` and the ``index`` group are copies for readers without
rtml, written after the commit: a process killed in between leaves them behind the record,
never ahead of it. :func:`committed_counts` reads the record, :func:`read_index` checks the
stored index against it and rebuilds what is missing from the groups, and the next assembly
rewrites both copies.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rtml.data._schema import INDEX_COLUMNS, INDEX_GROUP, strings

#: Index columns copied from a molecule group's per-trajectory string arrays.
_GROUP_COLUMNS = ("traj_id", "geometry_id", "field_kind", "field_spec", "inputs_sha256",
                  "source_file", "source_sha256")
#: Index columns copied from a molecule group's attributes.
_GROUP_SCALAR_COLUMNS = ("n_basis", "n_spin", "n_time")
#: Index-group attribute: its row count, set to None before the index is rewritten and set
#: after its last column is written; the index is complete when it is a number.
INDEX_ROWS_ATTR = "n_rows"


def committed_counts(root) -> dict[str, int]:
    """``{molecule: committed rows}`` of an open store root group, in store order, from the
    root attribute ``n_committed`` (the commit record)."""
    attrs = root.attrs.asdict()
    record = attrs["n_committed"]
    return {str(m): int(record.get(str(m), 0)) for m in attrs.get("molecules", [])}


def dataset_sha256(index: dict[str, list]) -> str:
    """SHA-256 of the sorted ``"{traj_id} {inputs_sha256}"`` lines of an index."""
    lines = sorted(f"{t} {s}" for t, s in zip(index["traj_id"], index["inputs_sha256"]))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_index(root) -> dict[str, list]:
    """The index of an open store root group: one entry per committed row, molecules in
    store order, rows ascending; columns :data:`~rtml.data._schema.INDEX_COLUMNS` as lists
    of ``str`` or ``int``.

    The stored ``index`` group is used where it is complete and agrees with the commit
    record; rows it lacks (a kill after the commit, before the index was rewritten) are
    read from the molecule groups.
    """
    return index_from_groups(root, committed_counts(root), _stored_index(root))


def index_from_groups(root, counts: dict[str, int],
                      old: dict[str, list] | None = None) -> dict[str, list]:
    """The index of rows ``0 .. counts[m] - 1`` of each molecule group ``m`` (in ``counts``
    order), reusing the rows of ``old`` (a previous index) that it holds completely and
    reading the others from the groups."""
    cols: dict[str, list] = {name: [] for name, _ in INDEX_COLUMNS}
    for mol, n in counts.items():
        have = _reusable_rows(old, mol, n)
        k = len(have)
        if k:
            for name, _ in INDEX_COLUMNS:
                cols[name] += [old[name][i] for i in have]
        if k == n:
            continue
        g = root[mol]
        attrs = g.attrs.asdict()
        for name in _GROUP_COLUMNS:
            cols[name] += strings(g[name][k:n])
        for name in _GROUP_SCALAR_COLUMNS:
            cols[name] += [int(attrs[name])] * (n - k)
        cols["molecule"] += [mol] * (n - k)
        cols["row"] += list(range(k, n))
    return cols


def _reusable_rows(old: dict[str, list] | None, mol: str, n: int) -> list[int]:
    """Positions in ``old`` of rows ``0 .. k - 1`` of molecule ``mol`` (k <= n as large as
    ``old`` holds them in order, each with a traj_id)."""
    if not old:
        return []
    have = sorted((i for i, m in enumerate(old["molecule"]) if m == mol and old["row"][i] < n),
                  key=lambda i: old["row"][i])
    k = 0
    while k < len(have) and old["row"][have[k]] == k and old["traj_id"][have[k]]:
        k += 1
    return have[:k]


def _stored_index(root) -> dict[str, list] | None:
    """The stored ``index`` group as lists, or None when it is missing or incomplete (a
    rewrite that did not finish: :data:`INDEX_ROWS_ATTR` None or absent, or columns of
    other lengths)."""
    try:
        ig = root[INDEX_GROUP]
        values = {name: np.asarray(ig[name][...]) for name, _ in INDEX_COLUMNS}
    except (KeyError, FileNotFoundError):
        return None
    n_rows = ig.attrs.get(INDEX_ROWS_ATTR)
    if n_rows is None:
        return None  # a rewrite that never finished
    lengths = {len(v) for v in values.values()}
    if len(lengths) != 1 or lengths != {int(n_rows)}:
        return None
    return {name: (strings(values[name]) if kind is str else [int(v) for v in values[name]])
            for name, kind in INDEX_COLUMNS}

