"""Copy every row of one store into another, empty one (`flowrun store migrate`)."""

from __future__ import annotations

from typing import Any

from runner.store.base import TABLES, Store, StoreError
from runner.store.seal import reseal


def copy_store(src: Store, dst: Store) -> dict[str, tuple[int, int]]:
    """Copy runs, bundles, node results, events, calls, ledger, approvals, switches and spend
    from `src` into `dst` in one transaction, then count both: {table: (source, copied)}.

    `dst` must hold no rows. Sealed values are sealed again under the key `dst` uses (the
    process's current key: open `dst` after `src`). Rows keep their ids and values otherwise.
    """
    before = dst.row_counts()
    if any(before.values()):
        held = ", ".join(f"{n} {t}" for t, n in before.items() if n)
        raise StoreError(
            f"{dst.location} is not empty ({held})",
            hint="migrate into a new, empty store; nothing was copied",
        )
    tables: dict[str, list[dict[str, Any]]] = {
        t: [{k: reseal(v) for k, v in row.items()} for row in src.export_rows(t)] for t in TABLES
    }
    dst.import_rows(tables)
    counts = src.row_counts()
    after = dst.row_counts()
    result = {t: (counts[t], after[t]) for t in TABLES}
    wrong = [t for t, (a, b) in result.items() if a != b]
    if wrong:
        raise StoreError(
            f"the copy in {dst.location} does not match its source: "
            + ", ".join(f"{t} {result[t][0]} vs {result[t][1]}" for t in wrong)
        )
    return result
