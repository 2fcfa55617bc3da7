"""Conversations (system / user / assistant turns) rendered by the model's own chat
template, and the checks a conversation gets before it is rendered."""

from __future__ import annotations

import threading

import pytest
from tiny_models import CHATML

from antinet_tui.engine.errors import InvalidRequest
from antinet_tui.engine.numpy_backend import NumpyBackend
from antinet_tui.engine.protocol import GenerationRequest, Message
from antinet_tui.engine.tokenizer import ChatTemplate
from antinet_tui.engine.validation import validate_request

TURNS = (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
         Message("user", "And the capital of France?"))


def test_a_conversation_renders_turn_by_turn_in_the_models_template():
    rendered = ChatTemplate(CHATML).render_conversation(TURNS)
    assert rendered == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                        "<|im_start|>assistant\nHello!<|im_end|>\n"
                        "<|im_start|>user\nAnd the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_a_single_prompt_is_the_one_turn_conversation():
    template = ChatTemplate(CHATML)
    single = GenerationRequest("hello", system="Be brief.")
    assert template.render("hello", "Be brief.") == template.render_conversation(single.conversation())
    # without a system turn the template's own default system prompt applies
    assert "You are tiny." in template.render_conversation((Message("user", "hello"),))


@pytest.mark.parametrize("request_, message", [
    (GenerationRequest("", messages=TURNS, chat=False), "a conversation (messages) needs the chat template; it cannot be sent raw"),
    (GenerationRequest("", messages=(Message("system", "x"),)), "messages holds no user or assistant turn"),
    (GenerationRequest("", messages=(Message("user", "hi"), Message("assistant", "  "))),
     "messages[1].content is only whitespace"),
    (GenerationRequest("", messages=(Message("user", "ring \x07"),)),
     "messages[0].content contains control character U+0007 at position 5"),
    (GenerationRequest("", messages=(Message("tool", "{}"),)),  # type: ignore[arg-type]
     "messages[0].role must be one of system, user, assistant, got 'tool'"),
])
def test_a_conversation_that_cannot_be_rendered_is_refused_with_its_place(request_, message):
    with pytest.raises(InvalidRequest) as refused:
        validate_request(request_)
    assert str(refused.value) == message


def test_the_backend_generates_from_the_rendered_conversation(tiny_model, tmp_path):
    backend = NumpyBackend(tiny_model, cache_dir=tmp_path)
    backend.load()
    try:
        turns = (Message("system", "x"), Message("user", "hi"), Message("assistant", "yo"), Message("user", "ok"))
        conversation = GenerationRequest("", messages=turns, max_new_tokens=4, temperature=0)
        rendered = GenerationRequest(ChatTemplate(CHATML).render_conversation(turns), chat=False)
        assert backend.count_prompt_tokens(conversation) == backend.count_prompt_tokens(rendered)
        assert backend.count_prompt_tokens(conversation) > backend.count_prompt_tokens(GenerationRequest("ok"))
        result = backend.generate(conversation, lambda *_: None, threading.Event())
        assert result.prompt_tokens == backend.count_prompt_tokens(rendered) and len(result.token_ids) == 4
    finally:
        backend.close()
