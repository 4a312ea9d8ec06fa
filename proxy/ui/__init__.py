"""The curation console at /ui: the page and its static files (this folder), served by
``_console``.
"""

from proxy.ui._console import ui_router

__all__ = ["ui_router"]
