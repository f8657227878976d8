"""The runnable-block reader behind the README test: what it finds and what it accepts."""

from __future__ import annotations

import pytest

from tests.readme_blocks import expect_lines, map_ports, runnable_blocks

DOC = """# Title

```sh
not run
```

```sh runnable
echo hi
```

```text output
hi
```

## How it works

```python runnable interrupt
print(1)
```
"""


def test_runnable_blocks_come_in_order_with_their_output_and_flags() -> None:
    first, second = runnable_blocks(DOC)
    assert (first.lang, first.code, first.output, first.line) == ("sh", "echo hi\n", "hi\n", 7)
    assert not first.interrupt
    assert (second.lang, second.output, second.interrupt) == ("python", None, True)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("```text output\nx\n```\n", "must follow a runnable one"),
        ("```sh\nx\n```\n```text output\nx\n```\n", "must follow a runnable one"),
        ("```yaml runnable\nx: 1\n```\n", "only sh and python"),
        ("```sh runnable\nx\n", "unclosed"),
    ],
)
def test_misplaced_or_unrunnable_blocks_are_refused(doc: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runnable_blocks(doc)


def test_ports_are_mapped_as_whole_numbers_only() -> None:
    assert map_ports("127.0.0.1:7946 17946 79460", {7946: 41000}) == "127.0.0.1:41000 17946 79460"


def test_expected_lines_match_in_order_with_loose_spaces_and_gaps() -> None:
    expect_lines("a  b\n...\nd\n", "a b\nc\nd\n")
    expect_lines("...\nc\n...\n", "a\nb\nc\nd\n")


@pytest.mark.parametrize(
    ("expected", "actual", "message"),
    [
        ("a\nb\n", "a\nc\n", "'b' expected, got 'c'"),
        ("a\n", "a\nb\n", "unexpected output after line 1"),
        ("...\nz\n", "a\nb\n", "'z' not printed"),
        ("b\n...\na\n", "a\nb\n", "'b' expected, got 'a'"),
    ],
)
def test_output_that_drifted_from_the_text_fails(expected: str, actual: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        expect_lines(expected, actual)
