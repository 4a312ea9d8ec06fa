"""Replay recorded OpenAI traffic from a real local HTTP server, for end-to-end tests.

    from tests.replay import ReplayUpstream, recording

    with ReplayUpstream(recording("chat/ruby_chat_gpt35.yml")) as upstream:
        client = openai.OpenAI(base_url=upstream.base_url, api_key="sk-test")
        ...
        assert upstream.received[0].headers["authorization"] == "Bearer sk-test"

Faults (`ErrorReply`, `Delay`, `CutStream`, `EndlessStream`) are set per server with
`fault=`, per path with `faults={path: ...}`, or later with `set_fault`.
"""

from ._cassettes import (
    CATEGORIES,
    RECORDINGS_DIR,
    CassetteError,
    Interaction,
    all_cassettes,
    load_cassette,
    recording,
    split_sse_events,
)
from ._faults import CutStream, Delay, EndlessStream, ErrorReply, Fault, FaultPlan
from ._responses_recordings import RESPONSES_DIR, responses_recording
from ._server import ReceivedRequest, ReplayUpstream

__all__ = [
    "CATEGORIES",
    "RECORDINGS_DIR",
    "RESPONSES_DIR",
    "CassetteError",
    "CutStream",
    "Delay",
    "EndlessStream",
    "ErrorReply",
    "Fault",
    "FaultPlan",
    "Interaction",
    "ReceivedRequest",
    "ReplayUpstream",
    "all_cassettes",
    "load_cassette",
    "recording",
    "responses_recording",
    "split_sse_events",
]
