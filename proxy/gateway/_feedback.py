"""``POST /v1/feedback``: end users rate the completions they received.

The body names the completion by the id the client saw (``completion_id``) and gives any of
``thumbs`` ("up"/"down" or 1/-1), ``score`` (a number from 0, worst, to 1, best), ``comment``
and ``corrected`` (a better assistant message). The caller authenticates as for any /v1 call
and may only give feedback on completions made with its own key; any other completion id is
unknown (404).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.to_thread
import orjson
from litestar import Request, Response, post

from finetune import CaptureNotFound, feedback_input, feedback_kind, record_feedback
from proxy._errors import InvalidRequest
from proxy._services import services
from storage import Feedback, session_scope

_GRACE_SECONDS = 0.5
_POLL_SECONDS = 0.05


def feedback_object(feedback: Feedback, kind: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.feedback",
        "id": feedback.id,
        "completion_id": feedback.completion_id,
        "created_at": int(feedback.created_at.timestamp()),
        "thumbs": feedback.thumbs,
        "score": feedback.score,
        "comment": feedback.comment,
        "corrected": feedback.corrected,
        "feedback": kind,
    }


@post("/v1/feedback", status_code=200, include_in_schema=False)
async def create_feedback(request: Request[Any, Any, Any]) -> Response[bytes]:
    found = services(request)
    caller = await found.auth.caller(request.headers.get("authorization"))
    try:
        submitted = feedback_input(orjson.loads(await request.body()))
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body must be JSON.", code="invalid_json") from None

    def run() -> dict[str, Any]:
        with session_scope(found.engine) as session:
            row = record_feedback(submitted, api_key_id=caller.key_id, session=session)
            return feedback_object(row, feedback_kind(submitted))

    # A client may send feedback the moment its answer arrives, while the capture is still on
    # its way to the store (the sink writes in batches): give it a few flushes to land.
    deadline = time.monotonic() + found.settings.capture_flush_seconds * 2 + _GRACE_SECONDS
    while True:
        try:
            body = await anyio.to_thread.run_sync(run)
        except CaptureNotFound:
            if time.monotonic() >= deadline:
                raise
            await anyio.sleep(_POLL_SECONDS)
        else:
            return Response(orjson.dumps(body), media_type="application/json")
