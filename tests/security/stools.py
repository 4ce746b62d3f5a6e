"""Tools of the sealing test: what each call received goes to $STOOLS_LOG, outside the store."""

from __future__ import annotations

import json
import os


def lookup(email: str, card: str) -> dict[str, object]:
    """A read that echoes what it was given (so outputs carry the values too)."""
    return {"customer": email, "card_last4": card[-4:], "card": card}


def refund(email: str, card: str, key: str, note: str) -> dict[str, object]:
    """A write that records the values it received: they must be the real ones."""
    with open(os.environ["STOOLS_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"email": email, "card": card, "key": key, "note": note}) + "\n")
    return {"sent_to": email, "charged": card, "ok": True}


def echo(value: str) -> dict[str, object]:
    """A read whose result is what it was given (a tool that returns a secret)."""
    return {"value": value}
