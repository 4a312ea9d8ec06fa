"""``python -m tests.sandbox --port N``: the sandbox upstream in the foreground."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from tests.sandbox._jobs import SandboxConfig
from tests.sandbox._server import announce, create_sandbox_app


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandbox",
        description="SANDBOX upstream (not OpenAI): fake chat completions and fine-tuning.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--step-seconds", type=float, default=2.0, help="length of each job phase")
    parser.add_argument("--epochs", type=int, default=3, help="steps when n_epochs is auto")
    parser.add_argument("--file-processing-seconds", type=float, default=0.0)
    parser.add_argument(
        "--refuse-fine-tuning",
        action="store_true",
        help="refuse new jobs as OpenAI does once self-serve fine-tuning is closed",
    )
    parser.add_argument(
        "--student-skill",
        type=float,
        default=0.9,
        help="share of unseen prompts a trained ft: model answers as its teacher would",
    )
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    config = SandboxConfig(
        step_seconds=options.step_seconds,
        epochs=options.epochs,
        file_processing_seconds=options.file_processing_seconds,
        refuse_fine_tuning=options.refuse_fine_tuning,
        student_skill=options.student_skill,
    )
    announce()
    web.run_app(create_sandbox_app(config), host=options.host, port=options.port, print=None)


if __name__ == "__main__":
    main()
