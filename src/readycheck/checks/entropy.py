"""How many bits of guessing a secret value is worth: a conservative estimate.

The ceiling is what the value's length and alphabet allow: ``length * log2(alphabet)``,
the alphabet being the character classes the value uses (lower case, upper case,
digits, symbols, other), or the hexadecimal or decimal digits when it uses nothing else;
decoded bytes that are not text count 256 symbols each.

Below the ceiling, structure costs a guesser little, so the value is split into the
cheapest sequence of pieces (a dynamic programme over the positions, as zxcvbn does):
a random character costs ``log2(alphabet)``; a run of one character, an arithmetic
sequence (``abcd``, ``97531``), a keyboard walk (``qwerty``, ``1qaz``), a word from a
short list of common password words, or a repeat of an earlier part of the value
(``abcabcabc``, a word typed twice) costs a few bits for its start and length. The
estimate is the cheapest split, so it never exceeds the ceiling. Structure matches must
be long enough (four symbols; six in a hexadecimal or decimal alphabet) that a truly
random value rarely contains one by chance.

Only the first ``MAX_ANALYSED`` characters are analysed; a longer value is credited with
no more than its first part, which only ever under-estimates.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator
from functools import cache

MAX_ANALYSED = 1024
_SYMBOLS = frozenset(string.punctuation + " ")
_HEX_LOWER = frozenset("0123456789abcdef")
_HEX_UPPER = frozenset("0123456789ABCDEF")
_DIGITS = frozenset(string.digits)
_SEQUENCE_STEPS = (1, -1, 2, -2, 3, -3)
_REPEAT_CANDIDATES = 8

# Words people build "secrets" from; a longer list would catch more, but this one is only
# meant to make the obvious cases (a word typed four times) score low.
_WORD_LIST = """
    password passwd passw0rd secret secrets secretkey private token apikey access admin
    administrator root user login letmein welcome default changeme change changeit test
    testing tester example sample demo dummy placeholder insecure unsafe development
    develop staging production prod local localhost master slave main super superuser
    qwerty dragon monkey shadow sunshine princess football baseball soccer hockey batman
    superman trustno1 iloveyou hello hunter hunter2 killer freedom whatever starwars
    computer internet server service backend frontend database postgres postgresql mysql
    redis django flask fastapi rails laravel spring node express session cookie cookies
    signing signature encrypt encryption crypto cipher jwtsecret bearer oauth
    auth authentication hmac sha256 base64 random string value valid invalid please
    replace replaceme change_me your yours mine this that here there keyboard cat
    company project application app apps api web website prod production
    summer winter spring autumn january february march april june july august october
    november december monday friday sunday
"""
WORDS = frozenset(_WORD_LIST.split())
_WORD_LENGTHS = sorted({len(word) for word in WORDS if len(word) >= 4}, reverse=True)

_KEYBOARD_ROWS = (
    ("`1234567890-=", "~!@#$%^&*()_+", 0.0),
    ("qwertyuiop[]\\", "QWERTYUIOP{}|", 0.5),
    ("asdfghjkl;'", 'ASDFGHJKL:"', 0.75),
    ("zxcvbnm,./", "ZXCVBNM<>?", 1.25),
)


def alphabet_size(text: str) -> int:
    """The number of symbols a value of this shape could have been drawn from."""
    chars = set(text)
    if not chars:
        return 1
    if chars <= _DIGITS:
        return 10
    if chars <= _HEX_LOWER or chars <= _HEX_UPPER:
        return 16
    size = 0
    if any(c in string.ascii_lowercase for c in chars):
        size += 26
    if any(c in string.ascii_uppercase for c in chars):
        size += 26
    if any(c in _DIGITS for c in chars):
        size += 10
    if any(c in _SYMBOLS for c in chars):
        size += len(_SYMBOLS)
    if any(not c.isascii() or not c.isprintable() for c in chars):
        size += 100  # accented letters and the like: a generous guess, not the whole of Unicode
    return size


def estimate_text_bits(text: str) -> float:
    """Estimated bits of a text value (see the module docstring)."""
    return _estimate(text, alphabet_size(text))


def estimate_bytes_bits(data: bytes) -> float:
    """Estimated bits of decoded key bytes: judged as text when they are printable ASCII
    (someone base64-encoded a password), else as bytes of 256 possible values."""
    if data and all(32 <= byte < 127 for byte in data):
        return estimate_text_bits(data.decode("ascii"))
    return _estimate(data.decode("latin-1"), 256)


def ceiling_bits(length: int, alphabet: int) -> float:
    return length * math.log2(alphabet) if alphabet > 1 else 0.0


def _estimate(text: str, alphabet: int) -> float:
    if not text:
        return 0.0
    ceiling = ceiling_bits(len(text), alphabet)
    analysed = text[:MAX_ANALYSED]
    char_cost = math.log2(alphabet) if alphabet > 1 else 0.0
    min_match = 6 if alphabet <= 16 else 4
    size = len(analysed)
    best = [0.0] + [math.inf] * size
    matches: dict[int, list[tuple[int, float]]] = {}
    for start, end, cost in _structure(analysed, alphabet, min_match):
        matches.setdefault(start, []).append((end, cost))
    for i in range(size):
        if best[i] + char_cost < best[i + 1]:
            best[i + 1] = best[i] + char_cost
        for end, cost in matches.get(i, ()):
            if best[i] + cost < best[end]:
                best[end] = best[i] + cost
    return round(min(best[size], ceiling), 1)


def _structure(text: str, alphabet: int, min_match: int) -> Iterator[tuple[int, int, float]]:
    """Every structured piece of ``text``: (start, end, bits it costs a guesser)."""
    start_cost = math.log2(alphabet) if alphabet > 1 else 0.0
    yield from _runs_and_sequences(text, start_cost, min_match)
    yield from _keyboard_walks(text, min_match)
    yield from _words(text)
    yield from _repeats(text, min_match)


def _runs_and_sequences(
    text: str, start_cost: float, min_match: int
) -> Iterator[tuple[int, int, float]]:
    codes = [ord(c) for c in text]
    # A run is a sequence of step 0; pieces start only where the pattern starts, which
    # keeps this linear and loses nothing the repeat matcher would not find.
    for step in (0, *_SEQUENCE_STEPS):
        step_cost = 0.0 if step == 0 else math.log2(len(_SEQUENCE_STEPS))
        i = 0
        while i < len(codes):
            j = i + 1
            while j < len(codes) and codes[j] - codes[j - 1] == step:
                j += 1
            for end in range(i + min_match, j + 1):
                yield i, end, start_cost + step_cost + math.log2(end - i)
            # The next pattern may start on this one's last symbol (abcdcba).
            i = j - 1 if j > i + 1 else i + 1


def _keyboard_walks(text: str, min_match: int) -> Iterator[tuple[int, int, float]]:
    """Runs of neighbouring keys on a US QWERTY keyboard, typed without touching shift,
    turning at most once every four keys (a random value is full of short zig-zags
    between neighbours; a walk someone typed is mostly straight)."""
    positions = _keyboard()
    start_cost = math.log2(len(positions))
    i = 0
    while i < len(text):
        j, turns, direction = i + 1, 0, None
        while j < len(text):
            step = _key_step(positions, text[j - 1], text[j])
            if step is None:
                break
            turned = direction is not None and step != direction
            if turned and (turns + 1) * 4 > j - i:
                break
            turns += turned
            direction = step
            j += 1
        for end in range(i + min_match, j + 1):
            # Each turn of the walk is one of about six neighbours.
            yield i, end, start_cost + math.log2(end - i) + turns * math.log2(6)
        i = j - 1 if j > i + 1 else i + 1


@cache
def _keyboard() -> dict[str, tuple[float, int, bool]]:
    positions: dict[str, tuple[float, int, bool]] = {}
    for row, (plain, shifted, offset) in enumerate(_KEYBOARD_ROWS):
        for column, (key, shifted_key) in enumerate(zip(plain, shifted, strict=True)):
            positions[key] = (column + offset, row, False)
            positions[shifted_key] = (column + offset, row, True)
    return positions


def _key_step(
    positions: dict[str, tuple[float, int, bool]], first: str, second: str
) -> tuple[int, int] | None:
    if first == second or first not in positions or second not in positions:
        return None
    (x1, y1, shift1), (x2, y2, shift2) = positions[first], positions[second]
    dx, dy = x2 - x1, y2 - y1
    if shift1 != shift2 or abs(dy) > 1 or abs(dx) > 1:
        return None
    if dy != 0 and abs(dx) < 1:
        return (0, dy)  # down (or up) a column: the rows' stagger is not a turn (1qaz)
    return (1 if dx > 0 else -1, dy)


def _words(text: str) -> Iterator[tuple[int, int, float]]:
    lowered = text.lower()
    word_cost = math.log2(len(WORDS))
    for i in range(len(text)):
        for length in _WORD_LENGTHS:
            piece = lowered[i : i + length]
            if len(piece) == length and piece in WORDS:
                original = text[i : i + length]
                if original.islower() or original.isupper() or original[1:].islower():
                    case_cost = 0.0 if original.islower() else 1.0
                else:
                    case_cost = float(length)  # mixed case: each letter's case is a choice
                yield i, i + length, word_cost + case_cost


def _repeats(text: str, min_match: int) -> Iterator[tuple[int, int, float]]:
    """Copies of earlier text, overlapping allowed (``abababab`` is ``ab`` copied)."""
    seen: dict[str, list[int]] = {}
    for i in range(len(text) - min_match + 1):
        gram = text[i : i + min_match]
        for source in reversed(seen.get(gram, [])[-_REPEAT_CANDIDATES:]):
            length = _common_length(text, source, i)
            yield i, i + length, math.log2(i) + math.log2(length)
        seen.setdefault(gram, []).append(i)


def _common_length(text: str, source: int, start: int) -> int:
    """How far ``text[source:]`` and ``text[start:]`` agree (slices compare in C)."""
    low, high = 0, len(text) - start
    while low < high:
        middle = (low + high + 1) // 2
        if text[source : source + middle] == text[start : start + middle]:
            low = middle
        else:
            high = middle - 1
    return low
