"""CSV and XLSX downloads of a report table with Japanese headers, as staff paste them into
the ward's documents: one header row, one row per item, notes under the table."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from openpyxl import Workbook
from openpyxl.styles import Font

Matrix = list[list[str | int]]


def matrix(headers: Sequence[str], rows: Sequence[Sequence[str | int]], notes: Sequence[str]) -> Matrix:
    out: Matrix = [list(headers), *[list(r) for r in rows]]
    out += [[f"注：{note}"] for note in notes]
    return out


def to_csv(data: Matrix) -> bytes:
    """UTF-8 with a byte-order mark, so Excel in Japan opens it without mojibake."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(data)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(data: Matrix, title: str) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title[:31]
    for row in data:
        sheet.append(row)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
