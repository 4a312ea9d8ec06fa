"""A tiny random-initialised Qwen2-shaped model, built offline in a few seconds.

Its tokenizer is a byte-level BPE of a few hundred tokens trained here on a few KB of text, with
``Qwen2Tokenizer``'s own normaliser and pre-tokenizer (transformers loads a ``qwen2`` folder with
those, so a tokenizer built otherwise would give other ids), and a ChatML chat template that
renders tools, tool calls and tool results. One attention head of 64 dimensions: what vLLM's CPU
build accepts. Used by the training tests, the serving tests and the local demo.

Imports torch, tokenizers and transformers: only for processes that have the ``train`` extra.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

TOPICS = [
    ("weather", "The weather in {city} is {adj} today, with light wind and {n} degrees."),
    ("order", "Order {n} ships from {city} on Monday and arrives in {m} days."),
    ("account", "Your account in {city} is {adj}; the balance is {n} euros."),
    ("refund", "A refund of {n} euros goes back to the card used in {city}."),
]
CITIES = ["Paris", "Lyon", "Oslo", "Rome", "Lima", "Kyiv", "Bern", "Riga"]
ADJECTIVES = ["sunny", "calm", "cold", "open", "ready", "closed", "active", "late"]

# ChatML with tools. No raw newline follows a block tag: transformers renders templates with
# trim_blocks, which would drop it. Tool-call arguments are rendered as JSON whether they come as
# an object or as the JSON text OpenAI sends.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- 'Tools:\\n' }}"
    "{%- for tool in tools %}{{- tool | tojson + '\\n' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.content %}{{- message.content }}{%- endif %}"
    "{%- for call in message.tool_calls or [] %}"
    "{%- set arguments = call.function.arguments if call.function is defined else call.arguments %}"
    "{%- set name = call.function.name if call.function is defined else call.name %}"
    '{{- \'<tool_call>{"name": "\' + name + \'", "arguments": \' }}'
    "{%- if arguments is string %}{{- arguments }}{%- else %}{{- arguments | tojson }}{%- endif %}"
    "{{- '}</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def sentence(rng: random.Random) -> tuple[str, str]:
    """(topic, a sentence about it)."""
    topic, pattern = rng.choice(TOPICS)
    text = pattern.format(
        city=rng.choice(CITIES),
        adj=rng.choice(ADJECTIVES),
        n=rng.randint(2, 99),
        m=rng.randint(2, 9),
    )
    return topic, text


def corpus(seed: int = 0, sentences: int = 160) -> str:
    """A few KB of text in the tiny model's small world, chat markup included."""
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        topic, text = sentence(rng)
        lines.append(f"user: tell me about the {topic}\nassistant: {text}")
    lines.append('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    lines.append('{"type": "function", "function": {"name": "get_weather", "parameters": {}}}')
    return "\n".join(lines)


def chat_examples(count: int, seed: int = 1, *, tools: bool = True) -> list[dict[str, Any]]:
    """SFT lines as the export writes them: some with a tool call and its result, some with an
    earlier assistant turn kept as context only (``weight: 0``)."""
    rng = random.Random(seed)
    examples: list[dict[str, Any]] = []
    for index in range(count):
        topic, text = sentence(rng)
        city = rng.choice(CITIES)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"tell me about the {topic}"},
        ]
        example: dict[str, Any] = {"messages": messages}
        if tools and index % 3 == 0:
            call = {
                "id": f"call_{index}",
                "type": "function",
                "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": "sunny, 20"})
            example["tools"] = [WEATHER_TOOL]
        elif index % 3 == 1:
            messages.append(
                {"role": "assistant", "content": "Old answer from someone else.", "weight": 0}
            )
            messages.append({"role": "user", "content": "and now?"})
        messages.append({"role": "assistant", "content": text})
        examples.append(example)
    return examples


def preference_examples(count: int, seed: int = 2) -> list[dict[str, Any]]:
    """DPO lines as the export writes them."""
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        topic, good = sentence(rng)
        _, bad = sentence(rng)
        found.append(
            {
                "input": {"messages": [{"role": "user", "content": f"tell me about the {topic}"}]},
                "preferred_output": [{"role": "assistant", "content": good}],
                "non_preferred_output": [{"role": "assistant", "content": bad}],
            }
        )
    return found


def build_tiny_model(folder: Path, *, vocab_size: int = 480, seed: int = 0) -> Path:
    """Write a tiny Qwen2 model (config, safetensors weights, tokenizer, chat template) into
    ``folder``; returns it."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    trained = Tokenizer(BPE())
    trained.normalizer = normalizers.NFC()
    trained.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trained.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    trained.train_from_iterator(corpus(seed).splitlines(), trainer=trainer)
    vocab = trained.get_vocab()
    merges = _merges(trained)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(folder)
    return folder


def _merges(tokenizer: Any) -> list[tuple[str, str]]:
    import json

    body = json.loads(tokenizer.to_str())
    found = body["model"]["merges"]
    pairs: list[tuple[str, str]] = []
    for merge in found:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        pairs.append((left, right))
    return pairs
