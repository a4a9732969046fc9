"""Debian version comparison, as dpkg does it (deb-version(7)).

A version is [epoch:]upstream[-revision]. Each part is compared in alternating runs of
non-digits (where '~' sorts before everything, even the end, and letters before other
characters) and digits (numerically).
"""

from __future__ import annotations

import functools
import re

_TEXT = re.compile(r"\D*")
_DIGITS = re.compile(r"\d*")


def _take(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.match(text)
    return match[0] if match else ""


def _split(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon:
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, "0"
    return int(epoch or 0), upstream, revision


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(left: str, right: str) -> int:
    while left or right:
        left_text, right_text = _take(_TEXT, left), _take(_TEXT, right)
        for index in range(max(len(left_text), len(right_text))):
            a = _order(left_text[index]) if index < len(left_text) else 0
            b = _order(right_text[index]) if index < len(right_text) else 0
            if a != b:
                return -1 if a < b else 1
        left, right = left[len(left_text) :], right[len(right_text) :]
        left_digits, right_digits = _take(_DIGITS, left), _take(_DIGITS, right)
        a, b = int(left_digits or 0), int(right_digits or 0)
        if a != b:
            return -1 if a < b else 1
        left, right = left[len(left_digits) :], right[len(right_digits) :]
    return 0


def compare_versions(left: str, right: str) -> int:
    """-1, 0 or 1 as `left` sorts before, equal to or after `right`."""
    left_epoch, left_upstream, left_revision = _split(left)
    right_epoch, right_upstream, right_revision = _split(right)
    if left_epoch != right_epoch:
        return -1 if left_epoch < right_epoch else 1
    return _compare_part(left_upstream, right_upstream) or _compare_part(left_revision, right_revision)


version_key = functools.cmp_to_key(compare_versions)

_RELATIONS = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}


def satisfies(version: str, relation: str, wanted: str) -> bool:
    """Whether `version` meets `relation wanted`, e.g. ('2.0-1', '>=', '2.0')."""
    return bool(_RELATIONS[relation](compare_versions(version, wanted)))
