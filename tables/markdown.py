"""Grids as Markdown tables, for the README and the terminal."""

from __future__ import annotations

from tables.grid import Cell, Grid, cell_text

# Unicode superscripts read as footnote marks in a terminal and on GitHub alike.
_SUPERSCRIPTS = str.maketrans("abcdef", "ᵃᵇᶜᵈᵉᶠ")


def markdown_table(grid: Grid) -> str:
    """A heading, a pipe table (attack label on a block's first row) and its notes as a list."""
    stub = [grid.row_header] if grid.block_header is None else [grid.block_header, grid.row_header]
    columns = [f"{group} {column}" if grid.show_groups else column for group in grid.groups for column in grid.columns]
    lines = [
        f"### {grid.heading}: {_escape(grid.title)}",
        "",
        _row(stub + columns),
        _row(["---"] * len(stub) + ["--:"] * len(columns)),
    ]
    for block in grid.blocks:
        for index, line in enumerate(block.lines):
            label = _escape(line.label) + (line.mark or "").translate(_SUPERSCRIPTS)
            head = [label] if grid.block_header is None else [_escape(block.label) if index == 0 else "", label]
            lines.append(_row(head + [_cell(cell, grid) for cell in line.cells]))
    lines.append("")
    lines += [f"- {(mark or '').translate(_SUPERSCRIPTS)}{_escape(text)}" for mark, text in grid.notes]
    return "\n".join(lines) + "\n"


def _cell(cell: Cell, grid: Grid) -> str:
    """A cell's text, in bold when it is the best of its column."""
    text = cell_text(cell, grid, plus_minus=" ± ", dash="—")
    return f"**{text}**" if cell.bold else text


def _escape(text: str) -> str:
    """Text that cannot break a pipe table or turn into emphasis."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _row(cells: list[str]) -> str:
    """One pipe-table row."""
    return "| " + " | ".join(cells) + " |"
