"""Grids as LaTeX booktabs tables, one per file, and one standalone document holding them all."""

from __future__ import annotations

from collections.abc import Sequence

from tables.grid import Grid, cell_text

# Specials escaped in free text, and the few non-ASCII characters our labels and notes use.
_ESCAPES = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "±": r"$\pm$",
        "α": r"$\alpha$",
        "β": r"$\beta$",
        "—": "---",
        "“": "``",
        "”": "''",
    }
)


def latex_text(text: str) -> str:
    """Free text with LaTeX specials escaped."""
    return text.translate(_ESCAPES)


def latex_table(grid: Grid) -> str:
    """A `table` float with a booktabs tabular, then its footnotes; needs `\\usepackage{booktabs}`."""
    stub = [grid.row_header] if grid.block_header is None else [grid.block_header, grid.row_header]
    width = len(grid.columns)
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_text(grid.title)}}}",
        rf"\label{{tab:{grid.key}}}",
        rf"\begin{{tabular}}{{{'l' * len(stub)}{'c' * width * len(grid.groups)}}}",
        r"\toprule",
    ]
    columns = [latex_text(column) for column in grid.columns] * len(grid.groups)
    if grid.show_groups:
        groups = [rf"\multicolumn{{{width}}}{{c}}{{{latex_text(group)}}}" for group in grid.groups]
        lines.append(_row([latex_text(header) for header in stub] + groups))
        first = len(stub) + 1
        lines.append(
            " ".join(
                rf"\cmidrule(lr){{{first + i * width}-{first + (i + 1) * width - 1}}}" for i in range(len(grid.groups))
            )
        )
        lines.append(_row([""] * len(stub) + columns))
    else:
        lines.append(_row([latex_text(header) for header in stub] + columns))
    for block in grid.blocks:
        lines.append(r"\midrule")
        for index, line in enumerate(block.lines):
            label = latex_text(line.label) + (rf"\textsuperscript{{{line.mark}}}" if line.mark else "")
            head = [label] if grid.block_header is None else [latex_text(block.label) if index == 0 else "", label]
            cells = [cell_text(cell, grid, plus_minus=r" $\pm$ ", dash="---") for cell in line.cells]
            marked = [
                rf"\textbf{{{text}}}" if cell.bold else text for cell, text in zip(line.cells, cells, strict=True)
            ]
            lines.append(_row(head + marked))
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip", r"{\footnotesize"]
    lines += [
        (rf"\textsuperscript{{{mark}}}" if mark else "") + latex_text(text) + r"\par" for mark, text in grid.notes
    ]
    lines += ["}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def latex_document(tables: Sequence[str]) -> str:
    """A standalone article holding every table, numbered in Roman as in the paper."""
    head = [
        r"\documentclass{article}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\usepackage{booktabs}",
        r"\renewcommand{\thetable}{\Roman{table}}",
        r"\setlength{\abovecaptionskip}{0pt}",
        r"\setlength{\belowcaptionskip}{6pt}",
        r"\makeatletter\setlength{\@fptop}{0pt}\makeatother",  # float pages start at the top
        r"\begin{document}",
    ]
    return "\n".join(head) + "\n" + "\n".join(tables) + r"\end{document}" + "\n"


def _row(cells: Sequence[str]) -> str:
    """One tabular row."""
    return " & ".join(cells) + r" \\"
