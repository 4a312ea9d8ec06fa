"""The sandbox upstream itself: labelled, deterministic, and its ft: models learn the teacher;
and the loss curve the local demo draws."""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.sandbox import SANDBOX_HEADER, SandboxConfig, answer_text, running_sandbox
from tests.sandbox._loss_curve import chart, sparkline

TEACHER = "gpt-4o-2024-08-06"
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 7 squared?"}]


def test_answers_are_labelled_and_deterministic() -> None:
    with running_sandbox() as url:
        client = openai.OpenAI(base_url=url, api_key="sk-sandbox")
        raw = client.chat.completions.with_raw_response.create(model=TEACHER, messages=QUESTION)
        assert raw.headers[SANDBOX_HEADER] == "true"
        first = raw.parse().choices[0].message.content
        again = client.chat.completions.create(model=TEACHER, messages=QUESTION)
        assert first == again.choices[0].message.content == answer_text(TEACHER, QUESTION)
        other = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        assert other.choices[0].message.content != first
        stream = client.chat.completions.create(
            model=TEACHER,
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == first and chunks[-1].usage is not None
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="ft:gpt-4o-mini:acme::x", messages=QUESTION)


def test_a_trained_model_answers_like_the_teacher_on_seen_prompts() -> None:
    with running_sandbox(SandboxConfig(step_seconds=0.1, epochs=2)) as url:
        client = openai.OpenAI(base_url=url, api_key="sk-sandbox")
        teacher = client.chat.completions.create(model=TEACHER, messages=QUESTION)
        example = {
            "messages": [*QUESTION, teacher.choices[0].message.model_dump(exclude_none=True)]
        }
        upload = client.files.create(
            file=("train.jsonl", json.dumps(example).encode() + b"\n"),
            purpose="fine-tune",
        )
        job = client.fine_tuning.jobs.create(
            model="gpt-4o-mini", training_file=upload.id, suffix="demo"
        )
        assert job.status == "validating_files"
        time.sleep(0.4)
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded"
        assert done.fine_tuned_model == f"ft:gpt-4o-mini:sandbox:demo:{job.id[-6:]}"
        student = client.chat.completions.create(model=done.fine_tuned_model, messages=QUESTION)
        assert student.choices[0].message.content == teacher.choices[0].message.content
        unseen: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": "What is 8 squared?"}
        ]
        base = client.chat.completions.create(model=done.fine_tuned_model, messages=unseen)
        assert base.choices[0].message.content == answer_text("gpt-4o-mini", unseen)
        assert done.fine_tuned_model in [m.id for m in client.models.list()]


def test_responses_get_the_chat_answer_as_an_object_and_as_typed_events() -> None:
    with running_sandbox() as url:
        client = openai.OpenAI(base_url=url, api_key="sk-sandbox")
        answer = client.responses.create(
            model=TEACHER, instructions="Be brief.", input="What is 7 squared?"
        )
        expected = answer_text(
            TEACHER,
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 7 squared?"},
            ],
        )
        assert answer.output_text == expected
        events = list(client.responses.create(model=TEACHER, input="Hi", stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert (
        text
        == events[-1].response.output_text
        == answer_text(TEACHER, [{"role": "user", "content": "Hi"}])
    )


def test_the_loss_chart_draws_each_step_as_a_column_between_the_highest_and_lowest_loss() -> None:
    assert chart([3.0, 2.5, 2.0, 1.0], rows=4) == [
        "  3.000 │█   ",
        "        │██  ",
        "        │███ ",
        "  1.000 │███▁",
        "        └────",
    ]
    assert sparkline([6.2, 5.9, 5.5, 5.4]) == "█▅▂▁"
    assert sparkline([2.0, 2.0]) == "▁▁"


def test_a_long_loss_curve_is_averaged_into_the_charts_width() -> None:
    drawn = chart([float(n) for n in range(100, 0, -1)], rows=3, width=10)
    assert [len(line) for line in drawn] == [19] * 4
    assert drawn[0] == " 95.500 │█▅▃       "
    assert drawn[2].startswith("  5.500 │")
