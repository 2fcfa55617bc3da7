"""Replies in OpenAI's shapes: chat.completion, chat.completion.chunk, text_completion,
usage, and our measured figures per request in `timings` (llama.cpp's server puts its own
figures in a field of that name; its `prompt_n`, `predicted_n`, `prompt_per_second` and
`predicted_per_second` are there too, with the same meaning, for tools that read them)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from antinet_tui.runtime.metrics import RequestMetrics

# the engine's stop reasons in OpenAI's words: "stop" (the model ended its turn or a stop
# string matched), "length" (max tokens, or the context window is full)
FINISH_REASONS = {"eos": "stop", "stop_string": "stop", "max_tokens": "length", "context": "length"}


def completion_id(kind: str, request_id: int) -> str:
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    return f"{prefix}-{request_id}-{uuid.uuid4().hex[:12]}"


def finish_reason(metrics: RequestMetrics) -> str:
    return FINISH_REASONS.get(metrics.stop_reason or "", "stop")


def usage(metrics: RequestMetrics) -> dict[str, int]:
    prompt = metrics.prompt_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": metrics.generated_tokens,
            "total_tokens": prompt + metrics.generated_tokens}


def timings(metrics: RequestMetrics, request_id: int) -> dict[str, Any]:
    """Our figures, by DESIGN.md's definitions (queue wait apart from TTFT)."""
    return {
        "request_id": request_id,
        "queue_wait_ms": _round(metrics.queue_wait_ms),
        "ttft_ms": _round(metrics.ttft_ms),
        "prefill_tok_s": _round(metrics.prefill_tok_s),
        "decode_tok_s": _round(metrics.decode_tok_s),
        "e2e_ms": _round(metrics.e2e_ms),
        "mode": metrics.mode,
        "stop_reason": metrics.stop_reason,
        "prompt_n": metrics.prompt_tokens,
        "predicted_n": metrics.generated_tokens,
        "prompt_per_second": _round(metrics.prefill_tok_s),
        "predicted_per_second": _round(metrics.decode_tok_s),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def full_reply(kind: str, cid: str, model: str, text: str, metrics: RequestMetrics, request_id: int) -> dict:
    """The non-streamed answer; usage is always there."""
    reason = finish_reason(metrics)
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "logprobs": None, "finish_reason": reason}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        obj = "text_completion"
    return {"id": cid, "object": obj, "created": int(time.time()), "model": model, "choices": [choice],
            "usage": usage(metrics), "timings": timings(metrics, request_id)}


class ChunkWriter:
    """The SSE lines of one streamed answer: `data: {json}\\n\\n` each, `data: [DONE]` last."""

    def __init__(self, kind: str, cid: str, model: str):
        self.kind, self.cid, self.model = kind, cid, model
        self.created = int(time.time())

    def _chunk(self, choice: dict[str, Any] | None, **extra: Any) -> bytes:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        body: dict[str, Any] = {"id": self.cid, "object": obj, "created": self.created, "model": self.model,
                                "choices": [choice] if choice is not None else [], **extra}
        return sse(body)

    def first(self) -> bytes | None:
        """Chat streams open with the assistant's role, as OpenAI's do."""
        if self.kind != "chat":
            return None
        return self._chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                            "finish_reason": None})

    def text(self, piece: str) -> bytes:
        if self.kind == "chat":
            return self._chunk({"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None})
        return self._chunk({"index": 0, "text": piece, "logprobs": None, "finish_reason": None})

    def last(self, metrics: RequestMetrics, request_id: int, include_usage: bool) -> bytes:
        reason = finish_reason(metrics)
        if self.kind == "chat":
            choice: dict[str, Any] = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
        out = self._chunk(choice, timings=timings(metrics, request_id))
        if include_usage:  # OpenAI's separate usage chunk: no choices
            out += self._chunk(None, usage=usage(metrics))
        return out + DONE


DONE = b"data: [DONE]\n\n"


def sse(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n\n"
