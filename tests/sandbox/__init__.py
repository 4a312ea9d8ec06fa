"""A SANDBOX upstream for tests and ``make demo``: fake chat completions and a fake files and
fine-tuning API, labelled as a sandbox everywhere (``ft:<base>:sandbox:...`` models, the
``x-stillroom-sandbox: true`` header, a start-up banner). Never a default upstream.

Run it with ``python -m tests.sandbox --port N``.
"""

from tests.sandbox._chat import answer_text
from tests.sandbox._jobs import CLOSED_MESSAGE, Sandbox, SandboxConfig
from tests.sandbox._server import (
    BANNER,
    SANDBOX_HEADER,
    announce,
    create_sandbox_app,
    running_sandbox,
)

__all__ = [
    "BANNER",
    "CLOSED_MESSAGE",
    "SANDBOX_HEADER",
    "Sandbox",
    "SandboxConfig",
    "announce",
    "answer_text",
    "create_sandbox_app",
    "running_sandbox",
]
