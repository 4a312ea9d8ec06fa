"""The proxy: the app's wiring and settings here; its rooms below.

gateway/   the /v1 surface and hot path: auth, routing, forwarding, capture sink, shadow
admin/     the admin API under /admin, one module per resource
cli/       the ``stillroom`` command
ui/        the review console
"""

from proxy._app import create_app
from proxy._settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "create_app", "load_settings"]
