"""The gateway: the OpenAI surface under /v1 and the hot path behind it.

Who is calling (``_auth``), which target serves them (``_router``), the two create calls
answered before routing (``_hot``), relaying the request and its answer (``_forward``,
``_upstream``), rebuilding streams (``_accumulate``), handing the exchange to the capture sink (``_capture``, ``_sink``, and ``_dead_letter`` for what it could not store),
shadow traffic to the teacher (``_shadow``), stored completions and responses answered from the
store (``_stored``, ``_stored_responses``), feedback and the model list.
"""

from proxy.gateway._auth import Authenticator
from proxy.gateway._dead_letter import (
    DEAD_LETTER,
    DeadLetter,
    keep_dead_letters,
    read_dead_letters,
    retry_dead_letter,
)
from proxy.gateway._feedback import create_feedback
from proxy.gateway._forward import Forwarder
from proxy.gateway._hot import HotPath
from proxy.gateway._model_list import list_models
from proxy.gateway._passthrough import PassThrough
from proxy.gateway._router import RouteTable, named_upstreams, student_serving
from proxy.gateway._routes import ROUTES
from proxy.gateway._shadow import ShadowRunner
from proxy.gateway._sink import CaptureSink
from proxy.gateway._stored import StoredCompletions
from proxy.gateway._stored_responses import StoredResponses
from proxy.gateway._upstream import Upstream

__all__ = [
    "DEAD_LETTER",
    "ROUTES",
    "Authenticator",
    "CaptureSink",
    "DeadLetter",
    "Forwarder",
    "HotPath",
    "PassThrough",
    "RouteTable",
    "ShadowRunner",
    "StoredCompletions",
    "StoredResponses",
    "Upstream",
    "create_feedback",
    "keep_dead_letters",
    "list_models",
    "named_upstreams",
    "read_dead_letters",
    "retry_dead_letter",
    "student_serving",
]
