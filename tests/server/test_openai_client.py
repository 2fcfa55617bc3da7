"""The official `openai` package against a real server running the real SmolLM2 model."""

from __future__ import annotations

import pytest
from openai import OpenAI

FRANCE = "What is the capital of France? Answer in one sentence."


@pytest.fixture
def client(smol_server):
    return OpenAI(base_url=smol_server.api, api_key="unused", max_retries=0, timeout=120)


def model_id(client: OpenAI) -> str:
    return client.models.list().data[0].id


def test_models_lists_the_served_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["SmolLM2-135M-Instruct"]


def test_chat_not_streamed_answers_with_usage_and_our_figures(client):
    reply = client.chat.completions.create(model=model_id(client), temperature=0,
                                           messages=[{"role": "user", "content": FRANCE}])
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "The capital of France is Paris."
    assert choice.finish_reason == "stop"
    assert reply.usage.prompt_tokens == 42 and reply.usage.completion_tokens == 8
    assert reply.usage.total_tokens == 50
    timings = reply.model_extra["timings"]
    assert timings["predicted_n"] == 8 and timings["prompt_n"] == 42
    assert timings["ttft_ms"] > 0 and timings["decode_tok_s"] > 0 and timings["prefill_tok_s"] > 0
    assert timings["e2e_ms"] >= timings["ttft_ms"] and timings["queue_wait_ms"] >= 0
    assert timings["mode"] and timings["stop_reason"] == "eos"


def test_chat_streamed_gives_the_same_text_then_usage(client):
    stream = client.chat.completions.create(model=model_id(client), temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": FRANCE}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of France is Paris."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert len({c.id for c in chunks}) == 1


def test_max_tokens_ends_with_length(client):
    reply = client.chat.completions.create(model=model_id(client), temperature=0, max_tokens=3,
                                           messages=[{"role": "user", "content": FRANCE}])
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3
    assert reply.choices[0].message.content == "The capital of"


def test_seed_reproduces_a_sampled_answer(client):
    def ask(seed: int) -> str:
        reply = client.chat.completions.create(
            model=model_id(client), temperature=1.0, seed=seed, max_completion_tokens=24,
            messages=[{"role": "user", "content": "Write one sentence about the sea."}])
        return reply.choices[0].message.content

    first = ask(7)
    assert ask(7) == first
    assert any(ask(seed) != first for seed in (8, 9, 10))  # sampling really is in play


def test_completions_take_the_raw_prompt(client):
    reply = client.completions.create(model=model_id(client), prompt="The capital of France is", max_tokens=4,
                                      temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].text.strip().startswith("Paris")
    assert reply.usage.prompt_tokens == 5  # no chat template around it
    streamed = client.completions.create(model=model_id(client), prompt="The capital of France is", max_tokens=4,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == reply.choices[0].text


def test_stop_strings_end_the_answer_without_the_match(client):
    kwargs = dict(model=model_id(client), temperature=0, stop=["Paris", "never seen"],
                  messages=[{"role": "user", "content": FRANCE}])
    reply = client.chat.completions.create(**kwargs)
    assert reply.choices[0].message.content == "The capital of France is "
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model_extra["timings"]["stop_reason"] == "stop_string"
    streamed = client.chat.completions.create(stream=True, **kwargs)
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The capital of France is "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_conversation_is_rendered_turn_by_turn_with_the_models_template(client, real_model):
    """The reply to a messages list is the model's reply to that conversation rendered by
    its own chat template: the same text and token count as sending the rendered prompt raw."""
    from gguf import GGUFReader

    from antinet_tui.engine.protocol import Message
    from antinet_tui.engine.tokenizer import ChatTemplate

    model = model_id(client)
    turns = [{"role": "system", "content": "You are a friendly assistant."},
             {"role": "user", "content": "Hello! My name is Ada."},
             {"role": "assistant", "content": "Nice to meet you, Ada! How can I help you today?"},
             {"role": "user", "content": "What is my name?"}]
    chat = client.chat.completions.create(model=model, temperature=0, max_tokens=24, messages=turns)
    alone = client.chat.completions.create(model=model, temperature=0, max_tokens=1, messages=turns[-1:])
    assert chat.usage.prompt_tokens > alone.usage.prompt_tokens + 20  # every turn is in the prompt

    field = GGUFReader(real_model).fields["tokenizer.chat_template"]
    template = ChatTemplate(bytes(field.parts[field.data[0]]).decode("utf-8"))
    rendered = template.render_conversation([Message(t["role"], t["content"]) for t in turns])
    raw = client.completions.create(model=model, temperature=0, max_tokens=24, prompt=rendered)
    assert raw.usage.prompt_tokens == chat.usage.prompt_tokens
    assert raw.choices[0].text == chat.choices[0].message.content
