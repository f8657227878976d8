"""The runnable code blocks of README.md and docs/: finding them, and checking what they print.

A fenced block whose info string says ``runnable`` (```` ```sh runnable ````,
```` ```python runnable ````) is run by ``tests/integration/test_readme.py``
against a real local cluster; ``runnable interrupt`` marks a program that
runs until Ctrl-C (it gets a SIGINT once it printed what the text says).
The ```` ```text output ```` block right after it, if any, is what it
prints: every line must appear in order (spaces compared loosely, since
tables align columns), and a ``...`` line stands for any lines.

So a snippet that drifts from the code fails the build instead of the
newcomer who pastes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["Block", "expect_lines", "map_ports", "runnable_blocks"]

_FENCE = re.compile(r"^```(\S*)(.*)$")


@dataclass(frozen=True)
class Block:
    lang: str
    flags: frozenset[str]
    code: str
    line: int
    """1-based line of the opening fence, for messages."""
    output: str | None = None
    """The ``text output`` block that follows, if any."""

    @property
    def interrupt(self) -> bool:
        return "interrupt" in self.flags


def _fenced(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: unclosed code block")
        blocks.append(
            Block(match[1], frozenset(match[2].split()), "\n".join(body) + "\n", start + 1)
        )
        i += 1
    return blocks


def runnable_blocks(text: str) -> list[Block]:
    """The runnable blocks of a Markdown text, in order, each with its output block.

    Raises:
        ValueError: an unclosed fence, or an output block that follows no runnable block.
    """
    found: list[Block] = []
    attachable = False  # the block just before was runnable, with no output yet
    for block in _fenced(text):
        if "output" in block.flags:
            if not attachable:
                raise ValueError(f"line {block.line}: an output block must follow a runnable one")
            found[-1] = replace(found[-1], output=block.code)
            attachable = False
        elif "runnable" in block.flags:
            if block.lang not in ("sh", "python"):
                raise ValueError(f"line {block.line}: only sh and python blocks can be runnable")
            found.append(block)
            attachable = True
        else:
            attachable = False
    return found


def map_ports(text: str, ports: dict[int, int]) -> str:
    """``text`` with each port number of ``ports`` (as a whole number) replaced."""
    if not ports:
        return text
    pattern = re.compile(r"(?<!\d)(" + "|".join(str(p) for p in ports) + r")(?!\d)")
    return pattern.sub(lambda m: str(ports[int(m[1])]), text)


def _loose(line: str) -> str:
    return " ".join(line.split())


def expect_lines(expected: str, actual: str) -> None:
    """Every line of ``expected`` in ``actual``, in order; ``...`` skips any lines.

    Without ``...`` the lines must follow each other exactly, from the first
    line to the last.

    Raises:
        AssertionError: naming the first expected line not found where it should be.
    """
    got = [_loose(line) for line in actual.splitlines()]
    at = 0
    gap = False
    for line in expected.splitlines():
        want = _loose(line)
        if want == "...":
            gap = True
            continue
        if gap:
            try:
                at = got.index(want, at) + 1
            except ValueError:
                raise AssertionError(f"{line!r} not printed (after line {at}):\n{actual}") from None
        else:
            if at >= len(got) or got[at] != want:
                seen = got[at] if at < len(got) else "<end of output>"
                raise AssertionError(f"{line!r} expected, got {seen!r}:\n{actual}")
            at += 1
        gap = False
    if not gap and at != len(got):
        raise AssertionError(f"unexpected output after line {at}: {got[at]!r}:\n{actual}")
