"""Read a drawing file in bounded blocks of whole, numbered lines (shared by the CSV and ndjson readers).

Memory does not grow with the file: it is read about `chunk_bytes` at a time, and a line longer than the
drawing limit (`Limits.max_chars` plus `LINE_SLACK` for the other fields) is skipped without being held and
rejected as `too_large`; a line that is not UTF-8 is rejected as `bad_encoding`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from doodle.drawing.batch import FileFormatError, Reject
from doodle.drawing.strokes import Limits

CHUNK_BYTES = 8 << 20
LINE_SLACK = 64 << 10  # bytes a line may hold beyond the drawing field's max_chars


def line_blocks(f, chunk_bytes: int, max_line: int, first_line: int) -> Iterator[tuple[int, bytes, list[Reject]]]:
    """Whole lines of a binary file about `chunk_bytes` at a time: (first line's number, bytes, rejects).

    A line still unfinished after `max_line` bytes is never held whole: it is skipped and rejected.
    """
    line, carry, skipping = first_line, b"", False
    while block := f.read(chunk_bytes):
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            block, skipping, line = block[end + 1 :], False, line + 1
        data = carry + block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if len(carry) > max_line:
            skipped = [Reject(line + data.count(b"\n", 0, cut), "", "too_large", f"line longer than {max_line} bytes")]
            carry, skipping = b"", True
        else:
            skipped = []
        if cut or skipped:
            yield line, data[:cut], skipped
            line += data.count(b"\n", 0, cut)
    if carry:
        yield line, carry, []


def decode_lines(first_line: int, body: bytes, rejects: list[Reject]) -> list[tuple[int, str]]:
    """Numbered lines of a block, each decoded alone; lines that are not UTF-8 go to `rejects`."""
    raw = body.split(b"\n") if body else []
    if body.endswith(b"\n"):
        raw.pop()
    out = []
    for i, b in enumerate(raw):
        try:
            out.append((first_line + i, b.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as e:
            rejects.append(Reject(first_line + i, "", "bad_encoding", str(e)[:80]))
    return out


def max_line_bytes(limits: Limits) -> int:
    """The longest line a reader holds whole before rejecting it as `too_large`."""
    return limits.max_chars + LINE_SLACK


def open_checked(path: Path):
    """`path` opened for binary reading, or a FileFormatError naming it."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise FileFormatError(f"{path}: cannot open ({e.strerror})") from None
