"""Renderers: reports drawn from the IR and its cost report (tables, diagrams, plots)."""

import html

SORT_KEYS = ("model", "params", "macs", "flops", "activations", "depth")
"""The columns a comparison table can be ordered by (here so the command line need not import
the renderer to offer them)."""


def html_table(
    header: tuple[str, ...], rows: list[tuple[str, ...]], caption: str = "", footer: int = 0
) -> str:
    """A plain HTML table, text escaped; the last `footer` rows go in its <tfoot>."""

    def cells(tag: str, values: tuple[str, ...]) -> str:
        return "".join(f"<{tag}>{html.escape(value)}</{tag}>" for value in values)

    body, foot = rows[: len(rows) - footer], rows[len(rows) - footer :]
    lines = [
        "<table>",
        *([f"<caption>{html.escape(caption)}</caption>"] if caption else []),
        f"<thead><tr>{cells('th', header)}</tr></thead>",
        "<tbody>",
        *(f"<tr>{cells('td', row)}</tr>" for row in body),
        "</tbody>",
        *(["<tfoot>", *(f"<tr>{cells('td', row)}</tr>" for row in foot), "</tfoot>"] * bool(foot)),
        "</table>",
    ]
    return "\n".join(lines) + "\n"
