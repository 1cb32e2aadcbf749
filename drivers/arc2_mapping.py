"""ArC TWO channel mappings in arc2control's format: which instrument channel each word line
and each bit line of a crossbar is wired to.

    mapping = load_mapping("standard32")          # one arc2control ships, or a path to a TOML
    word_channel, bit_channel = mapping.channels(row, col)

A mapping file (arc2control/mappings/*.toml, the format labs edit):

    [config]
    name = "[32NNA68] PLCC 32x32 (CB)"     # optional; the file's stem otherwise
    words = 32                             # number of word lines
    bits = 32                              # number of bit lines
    [mapping]
    words = [16, 63, ...]                  # channel of word line 0, 1, ...
    bits = [15, 32, ...]                   # channel of bit line 0, 1, ...

Row r of the crossbar is word line r and column c bit line c, so device (r, c) is arc2control's
crosspoint W{r:02d}B{c:02d}, between channels words[r] and bits[c]. A mapping with a
`[config] mask` lists separate devices (one per word line), not a crossbar, and is refused.
The mappings arc2control ships are copied in `arc2_mappings/` (see its README.md).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imssa_hw.errors import BadInput

MAPPINGS_DIR = Path(__file__).parent / "arc2_mappings"
SHIPPED = ("standard32", "resarray32", "probecard32", "sa-standard32", "sa-probecard32", "bnc6")
"""The mappings arc2control ships (arc2control/mappings/*.toml)."""
DEFAULT_MAPPING = "resarray32"
"""arc2control's default (its widgets/app.py: default_mapper = 'resarray32.toml')."""
CHANNELS = 64


@dataclass(frozen=True)
class ChannelMapping:
    """A crossbar's wiring: `words[r]` is the channel of word line (row) r, `bits[c]` that of
    bit line (column) c; `title` is arc2control's name for it."""

    name: str
    words: tuple[int, ...]
    bits: tuple[int, ...]
    title: str = ""

    @property
    def rows(self) -> int:
        return len(self.words)

    @property
    def cols(self) -> int:
        return len(self.bits)

    def channels(self, row: int, col: int) -> tuple[int, int]:
        """(word channel, bit channel) of device (row, col): arc2control's (high, low)."""
        return self.words[row], self.bits[col]


def load_mapping(spec: str | Path) -> ChannelMapping:
    """The mapping `spec` names: one of `SHIPPED`, or a TOML file in arc2control's format;
    BadInput (one line naming the file and key) for anything that is not a crossbar mapping."""
    path = MAPPINGS_DIR / f"{spec}.toml" if str(spec) in SHIPPED else Path(spec)
    if not path.is_file():
        raise BadInput(f"ArC TWO mapping {str(spec)!r} is neither one arc2control ships "
                       f"({', '.join(SHIPPED)}) nor a file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: not a readable UTF-8 TOML file ({_one_line(exc)})") from None
    config, wiring = _table(data, "config", path), _table(data, "mapping", path)
    if "mask" in config:
        raise BadInput(f"{path}: [config] mask: this mapping describes separate devices (a mask "
                       f"of selected crosspoints), not a crossbar; use a crossbar mapping such "
                       f"as standard32")
    words = _channels(config, wiring, "words", path)
    bits = _channels(config, wiring, "bits", path)
    shared = sorted(set(words) & set(bits))
    if shared:
        raise BadInput(f"{path}: [mapping] words and bits share channel(s) "
                       f"{', '.join(map(str, shared))}")
    title = config.get("name", path.stem)
    if not isinstance(title, str):
        raise BadInput(f"{path}: [config] name must be a string")
    return ChannelMapping(path.stem, words, bits, title)


def _table(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise BadInput(f"{path}: no [{key}] table")
    return table


def _channels(config: dict[str, Any], wiring: dict[str, Any], key: str,
              path: Path) -> tuple[int, ...]:
    """`[mapping] key`, checked against `[config] key` (its length)."""
    count = config.get(key)
    if not _is_int(count) or count < 1:
        raise BadInput(f"{path}: [config] {key} must be a positive integer, got {count!r}")
    channels = wiring.get(key)
    if not isinstance(channels, list) or not all(_is_int(c) for c in channels):
        raise BadInput(f"{path}: [mapping] {key} must be a list of channel numbers")
    if len(channels) != count:
        raise BadInput(f"{path}: [mapping] {key} lists {len(channels)} channels, [config] {key} "
                       f"says {count}")
    outside = [c for c in channels if not 0 <= c < CHANNELS]
    if outside:
        raise BadInput(f"{path}: [mapping] {key}: channel {outside[0]} outside 0..{CHANNELS - 1}")
    repeated = sorted({c for c in channels if channels.count(c) > 1})
    if repeated:
        raise BadInput(f"{path}: [mapping] {key}: channel(s) {', '.join(map(str, repeated))} "
                       f"listed more than once")
    return tuple(channels)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
