"""Genie's own figures, from the GetProfile() JSON.

The profile accumulates one event per dialog operation over the context's life
(GenieDialog_create, then one GenieDialog_query per Query). Qualcomm's consumers take
the last query event; we search by type rather than trust an index. Every metric is an
object {"value", "unit"}; times are µs in the SDKs seen so far, converted by unit here.
"""

from __future__ import annotations

import json
from typing import Any

QUERY_EVENT = "GenieDialog_query"

_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "ns": 1e-6}

# our key → (Genie metric, kind)
_FIGURES = {
    "genie_ttft_ms": ("time-to-first-token", "time"),
    "genie_generation_ms": ("token-generation-time", "time"),
    "genie_prefill_tok_s": ("prompt-processing-rate", "rate"),
    "genie_decode_tok_s": ("token-generation-rate", "rate"),
    "genie_prompt_tokens": ("num-prompt-tokens", "count"),
    "genie_generated_tokens": ("num-generated-tokens", "count"),
}


def query_events(profile_json: str) -> list[dict[str, Any]]:
    """Every GenieDialog_query event, oldest first ([] for '' or unparsable text)."""
    try:
        profile = json.loads(profile_json) if profile_json else {}
    except json.JSONDecodeError:
        return []
    components = profile.get("components", []) if isinstance(profile, dict) else []
    return [
        event
        for component in components
        if isinstance(component, dict)
        for event in component.get("events", [])
        if isinstance(event, dict) and event.get("type") == QUERY_EVENT
    ]


def figures(event: dict[str, Any]) -> dict[str, float | int]:
    """Flat figures from one query event; metrics the SDK did not report are left out."""
    result: dict[str, float | int] = {}
    for key, (metric, kind) in _FIGURES.items():
        entry = event.get(metric)
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), (int, float)):
            continue
        value = entry["value"]
        if kind == "time":
            scale = _TO_MS.get(str(entry.get("unit", "us")).lower())
            if scale is None:
                continue
            result[key] = value * scale
        elif kind == "count":
            result[key] = int(value)
        else:
            result[key] = float(value)
    if isinstance(event.get("duration"), (int, float)):
        result["genie_query_ms"] = event["duration"] * _TO_MS["us"]
    return result
