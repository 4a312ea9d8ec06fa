"""The proxy: OpenAI-compatible HTTP surface, capture sink, admin API, CLI and app wiring."""

from proxy._app import create_app
from proxy._settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "create_app", "load_settings"]
