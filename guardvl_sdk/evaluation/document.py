"""A report as a list of blocks, written both as markdown and as one self-contained HTML page.

The evaluation report and the comparison build a :class:`Document`; ``write`` renders it to
``NAME.md`` (images linked) and ``NAME.html`` (images embedded as base64, styles inline), so the
HTML file opens in a browser on its own and can be attached to a CI run or a ticket.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Document", "cut"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.item { border-left: 4px solid #c44; padding: 0.2em 0.8em; margin: 0.6em 0; background: #fafafa; }
.item pre { white-space: pre-wrap; margin: 0.2em 0; font-size: 0.85em; }
"""


@dataclass
class Document:
    """Blocks of a report in order; each method appends one."""

    title: str
    _md: list[str] = field(default_factory=list)
    _html: list[str] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading."""
        self._md += ["#" * level + " " + text, ""]
        self._html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text (``**bold**`` at its start is kept in both formats)."""
        self._md += [text, ""]
        escaped = html.escape(text)
        if escaped.startswith("**") and "**" in escaped[2:]:
            head, _, rest = escaped[2:].partition("**")
            escaped = f"<b>{head}</b>{rest}"
        escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
        self._html.append(f"<p>{escaped}</p>")

    def bullets(self, lines: list[str]) -> None:
        """A bulleted list."""
        if not lines:
            return
        self._md += [f"- {line}" for line in lines] + [""]
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        self._html.append(f"<ul>{items}</ul>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        """A table of text cells."""

        def md_cell(cell: str) -> str:
            return cell.replace("|", "\\|").replace("\n", " ")

        self._md += [
            "| " + " | ".join(md_cell(c) for c in header) + " |",
            "|" + " --- |" * len(header),
            *("| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows),
            "",
        ]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        self._html.append(
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )

    def image(self, path: Path, root: Path, alt: str) -> None:
        """A PNG: linked from the markdown, embedded in the HTML."""
        self._md += [f"![{alt}]({path.relative_to(root).as_posix()})", ""]
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self._html.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def item(self, title: str, fields: list[tuple[str, str]]) -> None:
        """One item of the data (a misclassified check): a title and labelled texts."""
        self._md.append(f"- **{title}**")
        for name, text in fields:
            quoted = text.replace("\n", " ⏎ ")
            self._md.append(f"  - {name}: {quoted}")
        self._md.append("")
        parts = "".join(
            f"<div><b>{html.escape(name)}:</b><pre>{html.escape(text)}</pre></div>"
            for name, text in fields
        )
        self._html.append(f'<div class="item"><b>{html.escape(title)}</b>{parts}</div>')

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``name.md`` and ``name.html`` into ``directory``; returns both paths."""
        md = directory / f"{name}.md"
        md.write_text("\n".join([f"# {self.title}", "", *self._md]), encoding="utf-8")
        page = directory / f"{name}.html"
        page.write_text(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self._html) + "\n</body></html>\n",
            encoding="utf-8",
        )
        return md, page


def cut(text: str | None, *, tail: bool = True, limit: int = 400) -> str:
    """At most ``limit`` characters: the end of a long text when ``tail``, else its start."""
    if not text:
        return ""
    text = text.strip()
    if len(text) <= limit:
        return text
    return "..." + text[-limit:] if tail else text[:limit] + "..."
