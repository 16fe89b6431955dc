"""LapClock: wall time split into named parts, for the training loop and the evaluation pass."""
import time


class LapClock:
    """Each `lap(part)` charges the seconds since the previous lap (or since creation) to `part`, so
    the parts add up to the wall time between creation and the last lap.

    Args:
      parts: the names of the parts, in the order they are reported (`seconds` keeps it).
    """

    def __init__(self, parts):
        self.seconds = dict.fromkeys(parts, 0.0)
        self._last = time.perf_counter()

    def lap(self, part: str) -> None:
        if part not in self.seconds:
            raise KeyError(f"LapClock has no part {part!r}; parts: {', '.join(self.seconds)}")
        now = time.perf_counter()
        self.seconds[part] += now - self._last
        self._last = now
