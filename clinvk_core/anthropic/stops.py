"""``stop_sequences``, honoured at the gateway: no CLI takes them, so the answer's text is cut at the first
one to be complete as the text is written (as the model would have stopped), as it streams. Text that may
be the start of a stop sequence is held back until it is not."""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    def __init__(self, sequences: Sequence[str]) -> None:
        self._sequences = [sequence for sequence in sequences if sequence]
        self._longest = max(map(len, self._sequences), default=0)
        self._held = ""
        self.matched: str | None = None  # the stop sequence the text reached

    def feed(self, text: str) -> str:
        """The text that can go out now: none once a stop sequence is reached."""
        if self.matched is not None:
            return ""
        buffer = self._held + text
        # The first to end; of those ending together the longest (it started first).
        found = [(at + len(s), at, s) for s in self._sequences if (at := buffer.find(s)) >= 0]
        if found:
            _, at, self.matched = min(found)
            self._held = ""
            return buffer[:at]
        longest_start = min(len(buffer), self._longest - 1)
        keep = next((n for n in range(longest_start, 0, -1) if self._may_start(buffer[-n:])), 0)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """What is held back, once no more text can complete a stop sequence."""
        held, self._held = self._held, ""
        return held

    def _may_start(self, tail: str) -> bool:
        return any(sequence.startswith(tail) for sequence in self._sequences)


def cut(text: str, sequences: Sequence[str]) -> tuple[str, str | None]:
    """``text`` up to its first stop sequence, and that sequence (None: none reached)."""
    scanner = StopScanner(sequences)
    kept = scanner.feed(text)
    return kept + scanner.flush(), scanner.matched
