from __future__ import annotations

import random

import pytest
from tiny_models import CHATML, tiny_vocab

from antinet_tui.engine.errors import ModelFormatError
from antinet_tui.engine.tokenizer import ChatTemplate, StreamDecoder, Tokenizer, VocabSpec

TEXTS = ["the cat in the hat", "计算机科学 是什么？", "emoji 🙂👍🏽 and 家族👨‍👩‍👧", "tabs\tand\nnewlines", "  spaces  "]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tokens, types, merges = tiny_vocab()
    return Tokenizer(VocabSpec(model="gpt2", pre="smollm", tokens=tokens, token_types=types, merges=merges,
                               bos_id=1, eos_id=2, eot_id=None, add_bos=False, chat_template=CHATML))


@pytest.mark.parametrize("text", TEXTS)
def test_encode_decode_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_merges_and_digits_follow_the_pre_tokenizer(tokenizer):
    ids = tokenizer.encode(" the 42")
    pieces = [tokenizer.token_text(i) for i in ids]
    assert pieces == ["Ġthe", "Ġ", "4", "2"]  # merged word; digits split one by one (smollm)


def test_control_tokens_in_text_are_parsed_as_specials(tokenizer):
    ids = tokenizer.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2
    assert 2 in tokenizer.end_of_generation and 0 in tokenizer.end_of_generation


@pytest.mark.parametrize("text", TEXTS)
def test_stream_decoder_never_yields_a_broken_character(tokenizer, text):
    # byte-level tokens split multi-byte characters; every piece must still be whole text
    ids = tokenizer.encode(text)
    assert len(ids) > len(text.encode("utf-8")) // 4  # really split at byte level
    decoder = StreamDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    for piece in pieces:
        assert "\ufffd" not in piece
        piece.encode("utf-8")  # raises on lone surrogates


def test_stream_decoder_on_random_byte_streams(tokenizer):
    # random bytes are mostly invalid UTF-8: output must equal the 'replace' decoding
    rng = random.Random(0)
    byte_token = {tokenizer.token_bytes[i]: i for i in range(len(tokenizer.token_bytes))
                  if len(tokenizer.token_bytes[i]) == 1}
    for _ in range(200):
        data = bytes(rng.choice([rng.randrange(256), *"é世🙂".encode()]) for _ in range(rng.randrange(1, 12)))
        decoder = StreamDecoder(tokenizer)
        out = "".join(decoder.push(byte_token[bytes([b])]) for b in data) + decoder.flush()
        assert out == data.decode("utf-8", errors="replace")


def test_chat_template_default_and_overridden_system_prompt():
    template = ChatTemplate(CHATML)
    default = template.render("hello")
    assert default == ("<|im_start|>system\nYou are tiny.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
                       "<|im_start|>assistant\n")
    custom = template.render("hello", system="Be brief.")
    assert custom.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "You are tiny" not in custom


def test_template_that_does_not_parse_is_a_clear_error():
    with pytest.raises(ModelFormatError, match="chat template does not parse"):
        ChatTemplate("{% for m in messages %}")


def test_unsupported_tokenizer_model_is_named():
    tokens, types, merges = tiny_vocab()
    spec = VocabSpec(model="llama", pre="default", tokens=tokens, token_types=types, merges=merges,
                     bos_id=1, eos_id=2, eot_id=None, add_bos=True, chat_template=None)
    with pytest.raises(ModelFormatError, match="tokenizer model 'llama' is not supported"):
        Tokenizer(spec)
