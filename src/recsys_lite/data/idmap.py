"""The one mapping between external string ids and contiguous integer indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.data.ids import id_problem, invalid_ids
from recsys_lite.errors import DataValidationError, NotFoundError


@dataclass(frozen=True)
class IdMap:
    """Immutable: ``ids[i]`` is the external id of index ``i``. ``add`` returns a new map."""

    ids: np.ndarray
    _lookup: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids).astype(str)
        object.__setattr__(self, "ids", ids)
        lookup = {value: n for n, value in enumerate(ids.tolist())}
        if len(lookup) != len(ids):
            raise ValueError("IdMap ids must be unique")
        object.__setattr__(self, "_lookup", lookup)

    @classmethod
    def from_values(cls, values: Iterable[str] | pa.Array | pa.ChunkedArray) -> IdMap:
        """Unique values in order of first appearance; each must be a canonical id (ids.py)."""
        if isinstance(values, pa.ChunkedArray | pa.Array):
            unique = pc.unique(values)
        else:
            unique = pa.array(list(dict.fromkeys(values)), pa.string())
        _require_canonical(unique)
        return cls(np.asarray(unique.to_numpy(zero_copy_only=False)))

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._lookup

    def get(self, external_id: str) -> int | None:
        return self._lookup.get(external_id)

    def index(self, external_id: str, kind: str = "id") -> int:
        try:
            return self._lookup[external_id]
        except KeyError:
            raise NotFoundError(f"unknown {kind} {external_id!r}") from None

    def to_index(
        self, values: pa.Array | pa.ChunkedArray | Sequence[str], *, strict: bool = True
    ) -> np.ndarray:
        """Indices of many ids at once (hash join in Arrow); unknown ids give -1 unless strict."""
        array = values if isinstance(values, pa.ChunkedArray | pa.Array) else pa.array(values)
        found = pc.index_in(array, value_set=pa.array(self.ids))
        indices = found.to_numpy(zero_copy_only=False)
        if found.null_count:
            if strict:
                missing = pc.filter(array, pc.is_null(found))[0]
                raise NotFoundError(f"unknown id {missing.as_py()!r}")
            indices = np.where(pc.is_null(found).to_numpy(zero_copy_only=False), -1, indices)
        return np.asarray(indices, dtype=np.int64)

    def to_external(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        return self.ids[np.asarray(indices, dtype=np.int64)]

    def add(self, new_ids: Iterable[str]) -> IdMap:
        fresh = [i for i in dict.fromkeys(new_ids) if i not in self._lookup]
        if not fresh:
            return self
        _require_canonical(pa.array(fresh, pa.string()))
        return IdMap(np.concatenate([self.ids, np.asarray(fresh, dtype=str)]))


def _require_canonical(ids: pa.Array | pa.ChunkedArray) -> None:
    """Before numpy sees them: numpy's fixed-width strings drop trailing NULs, which would make
    "U1\\0" and "U1" one id (the store's checks keep such ids out; this names any that got in)."""
    if not len(ids):
        return
    bad = invalid_ids(ids)
    if pc.any(bad).as_py():
        first = str(pc.filter(ids, bad)[0].as_py())
        raise DataValidationError(
            f"not a valid id: {first[:40]!r} ({id_problem(first) or 'not in canonical form'})"
        )
