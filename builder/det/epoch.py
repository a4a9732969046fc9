"""The one timestamp every artifact carries: SOURCE_DATE_EPOCH, or a fixed default."""

from __future__ import annotations

from collections.abc import Mapping

from builder.errors import bad_input

# 1980-01-01T00:00:00Z: the earliest time every format we write (zip, ISO 9660, tar) can hold.
DEFAULT_EPOCH = 315532800
# ISO 9660 dates store the year since 1900 in one byte.
LATEST_EPOCH = 7983878399


def source_date_epoch(environ: Mapping[str, str]) -> int:
    """Read SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/)."""
    text = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return DEFAULT_EPOCH
    if not text.isdecimal() or not DEFAULT_EPOCH <= int(text) <= LATEST_EPOCH:
        raise bad_input(
            f"SOURCE_DATE_EPOCH={text!r} is not a time meshseed can use",
            hint=f"whole seconds since 1970, from {DEFAULT_EPOCH} (1980-01-01) to {LATEST_EPOCH}",
        )
    return int(text)
