"""A context memory's state as bytes: the layout of the native kernel, read and written for the Python memory.

The native kernel (:mod:`workbench.native.context`) dumps its state as little-endian
int64 words (the layout is described at the top of ``workbench/native/context.c``).
:func:`pack` writes a pure-Python :class:`~workbench.models.context.ContextMemory` (and
its stream's bins and last prediction) in that layout, so that a detector saved by the
Python path continues on the kernel; :func:`unpack` reads it back into a
``ContextMemory``, so that a detector saved by the kernel continues where the kernel
cannot be built. Either way the scores that follow are the same.

Examples
--------
>>> from workbench.models.context import ContextMemory
>>> memory = ContextMemory()
>>> for facts in [(65536, 65538), (65537, 65538), (65536, 65538)]:
...     predicted = memory.step(facts, max_active=15)[0]
>>> state = pack(memory, predicted, bits=1, max_active=15, max_contexts=100, bin_low=0.0, step=1.0)
>>> again, predicted_again, bins = unpack(state)
>>> pack(again, predicted_again, bits=1, max_active=15, max_contexts=100, bin_low=0.0, step=1.0) == state
True
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from workbench.models.context import ContextMemory

__all__ = ["MAGIC", "pack", "unpack"]

MAGIC = 0x3156444143425757  # the kernel's "WWBCADV1"
_SENSOR = 1 << 16


def _bits(x: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", x))[0])


def _float(word: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", word))[0])


def pack(
    memory: ContextMemory,
    predicted: set[int],
    *,
    bits: int,
    max_active: int,
    max_contexts: int,
    bin_low: float,
    step: float,
) -> bytes:
    """The state of ``memory`` (and its stream's last prediction and bins) in the kernel's layout."""
    left, right = memory.facts
    mask = sum(1 << (f - _SENSOR) for f in predicted)
    words: list[int] = [MAGIC, bits, memory.max_left, max_active, max_contexts, _bits(bin_low), _bits(step), mask]
    words += [len(left), len(right), len(memory.contexts)]
    for facts in (*left, *right):
        words.append(len(facts))
        words.extend(facts)
    rids = memory.keys[1]
    for selected, matched, active, right_facts, zero, hash_left, hash_right in memory.contexts:
        words += [selected, matched, active, rids[right_facts], int(bool(zero)), hash_left, hash_right]
    for links, zero_links in zip(memory.links, memory.zero, strict=True):
        for held in (links, zero_links):
            words.append(len(held))
            for rid, cid in held.items():
                words += [rid, cid]
    words.append(-1 if memory.new_context is None else memory.new_context)
    words += [len(memory.left_group), *memory.left_group, len(memory.left_full), *memory.left_full]
    words.append(memory.left_known)
    return np.array(words, dtype="<i8").tobytes()


def unpack(state: bytes) -> tuple[ContextMemory, set[int], dict[str, Any]]:
    """The ``ContextMemory``, last prediction and settings (``bits``, ``bin_low``, ``step``, …) of ``state``."""
    words = [] if len(state) % 8 else np.frombuffer(state, dtype="<i8").tolist()
    if len(words) < 11 or words[0] != MAGIC:
        raise ValueError(f"{len(state)} bytes are not a context memory's state")
    try:
        memory, settings = _read(words)
    except (IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{len(state)} bytes are not a context memory's state ({exc})") from exc
    mask = settings.pop("predicted")
    predicted = {_SENSOR + i for i in range(16) if mask >> i & 1}
    return memory, predicted, settings


def _read(words: list[int]) -> tuple[ContextMemory, dict[str, Any]]:
    from workbench.models.context import ContextMemory

    bits, max_left, max_active, max_contexts, low, step, mask, n_left, n_right, n_contexts = words[1:11]
    pos = 11
    memory = ContextMemory(max_left)
    for side, count in ((0, n_left), (1, n_right)):
        for _ in range(count):
            size = words[pos]
            memory._semi(side, tuple(words[pos + 1 : pos + 1 + size]))
            pos += 1 + size
    right = memory.facts[1]
    for _ in range(n_contexts):
        selected, matched, active, rid, zero, hash_left, hash_right = words[pos : pos + 7]
        memory.contexts.append([selected, matched, active, right[rid], bool(zero), hash_left, hash_right])
        pos += 7
    for lid in range(n_left):
        for held in (memory.links[lid], memory.zero[lid]):
            count = words[pos]
            pairs = words[pos + 1 : pos + 1 + 2 * count]
            held.update(zip(pairs[::2], pairs[1::2], strict=True))
            pos += 1 + 2 * count
    new_context = words[pos]
    memory.new_context = None if new_context < 0 else new_context
    size = words[pos + 1]
    memory.left_group = tuple(words[pos + 2 : pos + 2 + size])
    pos += 2 + size
    size = words[pos]
    memory.left_full = list(words[pos + 1 : pos + 1 + size])
    memory.left_known = words[pos + 1 + size]
    if pos + 2 + size != len(words):
        raise ValueError("its length does not match")
    settings = {"bits": bits, "max_active": max_active, "max_contexts": max_contexts, "bin_low": _float(low)}
    settings.update(step=_float(step), predicted=mask)
    return memory, settings
