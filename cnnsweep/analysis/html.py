"""report.html: one self-contained page (images are PNG files beside it, no network, a few lines of
inline JS to sort the per-class table and to record that every image rendered)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable, Optional

from cnnsweep.atomic import atomic_write_bytes
from cnnsweep.safe_text import printable

STYLE = """body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:24px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child,td.t{text-align:left}th.s{cursor:pointer}
img{max-width:100%;border:1px solid #eee;margin:6px 0}figure{margin:12px 0}figcaption{font-size:13px;color:#555}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:4px 10px;font-size:13px}nav a{margin-right:12px}"""

# Sorting: click a header of a table with class "sortable"; numbers sort numerically. On load, the
# page records in <body data-images-ok> whether every <img> decoded (a test reads it from the DOM).
SCRIPT = """document.querySelectorAll('table.sortable th').forEach(function(th,col){th.className='s';
th.addEventListener('click',function(){var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),
asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';rows.sort(function(a,b){var x=a.cells[col].textContent,
y=b.cells[col].textContent,nx=parseFloat(x),ny=parseFloat(y),c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;
return asc?c:-c;});rows.forEach(function(r){tb.appendChild(r);});});});
window.addEventListener('load',function(){var im=Array.from(document.images),ok=im.every(function(i){
return i.complete&&i.naturalWidth>0;});document.body.setAttribute('data-images-ok',ok?'yes':'no');
document.body.setAttribute('data-images',String(im.length));});"""


def escape(text: Any) -> str:
    """Text (and attribute values) of the page: a class name or file name from disk may hold markup
    or undecodable bytes; both are shown as text, never as HTML."""
    return html.escape(printable(str(text)), quote=True)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def table(headers: list[str], rows: Iterable[list[Any]], sortable: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(path: str, caption: str = "") -> str:
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{escape(path)}" alt="{escape(caption or path)}">{cap}</figure>'


def notes(lines: list[str]) -> str:
    return "".join(f'<p class="note">{escape(n)}</p>' for n in lines)


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>{body}</section>'


def page(title: str, sections: list[tuple[str, str, str]], intro: str = "") -> str:
    nav = "".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body><h1>{escape(title)}</h1>'
            f"{intro}<nav>{nav}</nav>{body}<script>{SCRIPT}</script></body></html>")


def write_page(out_dir: Path, title: str, sections: list[tuple[str, str, str]], intro: str = "",
               name: Optional[str] = "report.html") -> Path:
    path = out_dir / name
    # atomic: a failed write leaves the previous report whole
    return atomic_write_bytes(path, page(title, sections, intro).encode("utf-8", errors="backslashreplace"))
