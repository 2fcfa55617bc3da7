"""Tokenizer and chat template, built from the GGUF metadata alone.

Encoding uses the `tokenizers` package (byte-level BPE with the pre-tokenizer the file
names); it matched llama.cpp's tokenization on SmolLM2. Decoding is a byte table: each
token id maps to its raw bytes, and `StreamDecoder` turns a stream of ids into text
without ever splitting a UTF-8 character, however the byte-level tokens cut it.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from antinet_tui.engine.errors import ModelFormatError
from antinet_tui.engine.protocol import Message

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Split patterns, as llama.cpp and the models' tokenizer.json files define them.
_QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SUPPORTED_PRE_TOKENIZERS = ("gpt2", "gpt-2", "default", "smollm", "qwen2", "llama-bpe", "llama3")

# Text of end-of-generation tokens that templates use besides the declared EOS.
_END_OF_TURN_TEXTS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>", "<|eom_id|>")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's reversible byte <-> printable-unicode table, inverted."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, codes)}


@dataclass(frozen=True)
class VocabSpec:
    """The tokenizer part of the GGUF metadata: small enough to cache as JSON."""

    model: str
    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    add_bos: bool
    chat_template: str | None

    @classmethod
    def from_gguf(cls, gf: Any) -> VocabSpec:
        model = gf.get("tokenizer.ggml.model")
        if model is None:
            raise ModelFormatError(f"{gf.path}: the file carries no tokenizer (tokenizer.ggml.model)")
        tokens = list(gf.require("tokenizer.ggml.tokens"))
        types = gf.get("tokenizer.ggml.token_type")
        return cls(
            model=model,
            pre=gf.get("tokenizer.ggml.pre", "default"),
            tokens=tokens,
            token_types=[int(t) for t in types] if types is not None else [NORMAL] * len(tokens),
            merges=list(gf.get("tokenizer.ggml.merges", [])),
            bos_id=_opt_int(gf.get("tokenizer.ggml.bos_token_id")),
            eos_id=_opt_int(gf.get("tokenizer.ggml.eos_token_id")),
            eot_id=_opt_int(gf.get("tokenizer.ggml.eot_token_id")),
            add_bos=bool(gf.get("tokenizer.ggml.add_bos_token", False)),
            chat_template=gf.get("tokenizer.chat_template"),
        )


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


class Tokenizer:
    def __init__(self, spec: VocabSpec):
        if spec.model != "gpt2":
            raise ModelFormatError(
                f"tokenizer model {spec.model!r} is not supported (only byte-level BPE, "
                "tokenizer.ggml.model = 'gpt2'; SentencePiece 'llama' vocabularies are not)"
            )
        if spec.pre not in SUPPORTED_PRE_TOKENIZERS:
            raise ModelFormatError(
                f"pre-tokenizer {spec.pre!r} is not supported; supported: "
                f"{', '.join(SUPPORTED_PRE_TOKENIZERS)}"
            )
        self.spec = spec
        self.vocab_size = len(spec.tokens)
        self._hf = _build_hf_tokenizer(spec)
        byte_of = _byte_decoder()
        self.token_bytes: list[bytes] = []
        for text, kind in zip(spec.tokens, spec.token_types):
            if kind == NORMAL:
                self.token_bytes.append(bytes(byte_of.get(c, 0x3F) for c in text))
            elif kind == USER_DEFINED:
                self.token_bytes.append(text.encode("utf-8"))
            else:  # control/unused tokens are not text
                self.token_bytes.append(b"")
        eog = {i for i in (spec.eos_id, spec.eot_id) if i is not None}
        eog |= {i for i, (t, k) in enumerate(zip(spec.tokens, spec.token_types))
                if k == CONTROL and t in _END_OF_TURN_TEXTS}
        self.end_of_generation = frozenset(eog)

    def encode(self, text: str) -> list[int]:
        ids = self._hf.encode(text, add_special_tokens=False).ids
        if self.spec.add_bos and self.spec.bos_id is not None:
            ids = [self.spec.bos_id, *ids]
        return ids

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_text(self, token_id: int) -> str:
        return self.spec.tokens[token_id]


def _build_hf_tokenizer(spec: VocabSpec):
    from tokenizers import AddedToken, Regex, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab = {tok: i for i, tok in enumerate(spec.tokens)}
    merges = [(left, right) for left, right in (m.split(" ", 1) for m in spec.merges)]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=spec.pre in ("llama-bpe", "llama3")))
    gpt2_split = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if spec.pre == "smollm":  # digits one by one, then GPT-2's split
        hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2_split])
    elif spec.pre in ("qwen2", "llama-bpe", "llama3"):
        pattern = _QWEN2_PATTERN if spec.pre == "qwen2" else _LLAMA3_PATTERN
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        hf.pre_tokenizer = gpt2_split
    specials = [AddedToken(t, special=True, normalized=False)
                for t, k in zip(spec.tokens, spec.token_types) if k in (CONTROL, USER_DEFINED)]
    hf.add_special_tokens(specials)
    return hf


class StreamDecoder:
    """Turns token ids into text incrementally; never yields half a UTF-8 character.

    Bytes of a character split across tokens are held until the character is complete;
    invalid sequences become U+FFFD, so every piece yielded is valid text.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._bytes = tokenizer.token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._bytes[token_id])

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class ChatTemplate:
    """The model's Jinja chat template, rendered in a sandbox as transformers does."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = ""):
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source = source or _CHATML
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env.globals["raise_exception"] = raise_exception
        try:
            self._template = env.from_string(self.source)
        except TemplateError as exc:
            raise ModelFormatError(f"the model's chat template does not parse: {exc}") from None
        self._bos, self._eos = bos_token, eos_token

    def render(self, user: str, system: str | None = None) -> str:
        """One user turn (and a system text; None keeps the template's default)."""
        turns = (Message("system", system),) if system is not None else ()
        return self.render_conversation((*turns, Message("user", user)))

    def render_conversation(self, turns: Sequence[Message]) -> str:
        """A conversation (system / user / assistant turns, in order), ending with the
        opening of the assistant's next turn, as the model was trained to see it."""
        from jinja2.exceptions import TemplateError

        messages = [{"role": turn.role, "content": turn.content} for turn in turns]
        try:
            return self._template.render(messages=messages, add_generation_prompt=True,
                                         bos_token=self._bos, eos_token=self._eos)
        except TemplateError as exc:
            raise ModelFormatError(f"the model's chat template failed: {exc}") from None


# Used when a file has no template: ChatML, which SmolLM2 and Qwen2 both use.
_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
