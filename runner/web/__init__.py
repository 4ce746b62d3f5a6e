"""The web console: approval inbox, run pages, kill switch, over the same run store."""

from runner.web.app import ConsoleConfig, create_app

__all__ = ["ConsoleConfig", "create_app"]
