"""Accounts-payable tools for the invoice reconciliation workflow (SQLite, money in cents)."""
