"""RevOps CRM tools on SQLite: accounts, contacts, deals, activities, merges and archivals.

The invariants a merge or an archival must keep (same account and tenant, a real match, no
clash of deal owners, archive only what is stale and dealless) live in these tools, so they
hold whatever a model proposes. The database is `FLOWRUN_CRM_DB` (`python -m tools.crm.seed`).
"""
