"""``python -m bench.uncaptured serve …``: stillroom as ``stillroom serve`` runs it, except that
every exchange handed to the capture sink is dropped.

Only the benchmark runs this, as the target "capture dropped": beside the floor and the real
stillroom in the same run, it splits what stillroom costs into its request path (the key check,
the relay, the metrics, the ``Exchange`` the hot path fills) and its capture (the hand-off, the
row built from the bodies, the write). Nothing is stored, so no deployment should ever run it.
One worker only: ``--workers`` above 1 starts processes that import stillroom afresh, and
capture as ``stillroom serve`` does.
"""

from __future__ import annotations

from proxy.cli._main import main as stillroom_main
from proxy.gateway._capture import Exchange
from proxy.gateway._sink import CaptureSink


def _drop(_sink: CaptureSink, _exchange: Exchange) -> None:
    """The hand-off, doing nothing: the exchange is freed with the request."""


if __name__ == "__main__":
    CaptureSink.submit = _drop  # type: ignore[method-assign, assignment]
    stillroom_main()
