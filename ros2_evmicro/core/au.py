"""The 21 Action Units of Table 1 of the paper, in the output order of every model and topic."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AU", "AUS", "AU_CODES", "AU_NAMES", "NUM_AUS", "au_index"]


@dataclass(frozen=True)
class AU:
    number: int
    name: str
    region: str

    @property
    def code(self) -> str:
        return f"AU{self.number}"


AUS: tuple[AU, ...] = (
    AU(2, "Outer Brow Raiser", "brows"),
    AU(4, "Brow Lowerer", "brows"),
    AU(5, "Upper Lid Raiser", "eyes"),
    AU(6, "Cheek Raiser", "cheeks"),
    AU(9, "Nose Wrinkler", "nose"),
    AU(12, "Lip Corner Puller", "mouth"),
    AU(15, "Lip Corner Depressor", "mouth"),
    AU(17, "Chin Raiser", "chin"),
    AU(23, "Lip Tightener", "mouth"),
    AU(26, "Jaw Drop", "jaw"),
    AU(41, "Lid Droop", "eyes"),
    AU(43, "Eyes Closed", "eyes"),
    AU(45, "Blink", "eyes"),
    AU(51, "Head Turn Left", "head"),
    AU(52, "Head Turn Right", "head"),
    AU(53, "Head Up", "head"),
    AU(54, "Head Down", "head"),
    AU(61, "Eyes Turn Left", "gaze"),
    AU(62, "Eyes Turn Right", "gaze"),
    AU(63, "Eyes Up", "gaze"),
    AU(64, "Eyes Down", "gaze"),
)
NUM_AUS = len(AUS)
AU_CODES: tuple[str, ...] = tuple(a.code for a in AUS)
AU_NAMES: dict[int, str] = {a.number: a.name for a in AUS}
_INDEX = {a.number: i for i, a in enumerate(AUS)}


def au_index(au: int | str) -> int:
    """Class index (0..20) of an AU given as a number (12) or a code ('AU12')."""
    key = au
    if isinstance(au, str):
        s = au.strip().upper()
        key = int(s[2:]) if s.startswith("AU") else int(s)
    try:
        return _INDEX[int(key)]
    except (KeyError, ValueError):
        raise ValueError(f"unknown Action Unit {au!r}; known: {', '.join(AU_CODES)}") from None
