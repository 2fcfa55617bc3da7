"""Stop strings: end generation before a given text, and never show any of it.

Text streams out piece by piece, and a stop string can arrive split across pieces
("<|" then "user|>"). So the filter holds back the longest tail of the text that could
still be the start of a stop string; it releases that tail once the next piece rules the
match out, and drops it (with everything after) once the match completes. Works on
decoded text, so it never splits a character.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopStrings:
    def __init__(self, stops: Sequence[str]):
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.matched: str | None = None  # the stop string that ended the text

    def push(self, piece: str) -> str:
        """The part of `piece` (and of what was held) that is certainly not a stop string.

        After a match (`matched` set) it returns the text before the match, and "" for
        any later piece.
        """
        if self.matched is not None:
            return ""
        if not self._stops:
            return piece
        text = self._held + piece
        first = None
        for stop in self._stops:
            at = text.find(stop)
            if at >= 0 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self.matched = first[1]
            self._held = ""
            return text[:first[0]]
        keep = self._longest_open_prefix(text)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        """Release the held tail: generation ended without completing a match."""
        held, self._held = self._held, ""
        return held if self.matched is None else ""

    def _longest_open_prefix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
