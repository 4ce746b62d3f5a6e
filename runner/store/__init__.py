"""Durable state of runs: runs, node results, events, approvals, the ledger, switches."""

from runner.store.db import DEFAULT_STORE, NotFound, RunRow, Store, StoreError, store_path

__all__ = ["DEFAULT_STORE", "NotFound", "RunRow", "Store", "StoreError", "store_path"]
