"""Keep a table's cursor on the same row (task, worker, queue) when a reload refills the table; the
widths that cut the cells of free text (labels, worker names) so one long value cannot push the other
columns off screen (``fmt.cut``; the task's detail and the CLI show them whole)."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

LABEL_WIDTH = 30  # cells of a label column (the task list's pred and final); longer labels end in "…"
NAME_WIDTH = 24  # cells of a worker-name column (the dashboard's and the workers screen's worker)


def cursor_key(table: DataTable) -> Any:
    """The key of the row under the cursor (``None`` when the table is empty)."""
    if not table.row_count:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def restore_cursor(table: DataTable, key: Any, row: int) -> None:
    """Put the cursor on the row keyed ``key`` when the table still has it, else on row ``row``
    (clamped): a refresh that added rows above must not move the cursor to another task."""
    if not table.row_count:
        return
    if key is not None:
        try:
            table.move_cursor(row=table.get_row_index(key))
            return
        except RowDoesNotExist:  # the row left the table
            pass
    table.move_cursor(row=min(max(row, 0), table.row_count - 1))
