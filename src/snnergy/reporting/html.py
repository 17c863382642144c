"""``report.html``: the report's own Markdown as one self-contained page, with sortable tables and
interactive charts in place of the PNG plots.

The page is rendered from the ``report.md`` text itself, so its verdict, tables and numbers are
the Markdown report's, character for character: nothing is computed twice. The Markdown is the
subset the report writers emit: ``#``/``##``/``###`` headings, paragraphs, ``- `` bullets, pipe
tables (a header row, a ``---`` row, body rows) and ``![name](path)`` images, with ``**bold**``,
``*italic*`` and ```code``` inline. Every text is escaped (labels come from user configs).

- The section whose heading ends with :data:`VERDICT_HEADING` (``## Which regularizer?`` of a
  comparison, ``### Iso-accuracy: which regularizer?`` of each sweep section) is a highlighted
  ``<section class="verdict">``; the first one has ``id="verdict"``.
- Tables are ``<table class="sortable">``: a click (or Enter) on a header sorts by that column,
  numerically where every cell reads as a number (``0.972 ± 0.004`` as 0.972), empty and ``n/a``
  cells last.
- An image whose path is a key of ``figures`` is replaced by those figures (inline SVG from
  :mod:`snnergy.reporting.figures`); any other image stays a relative link.

The page fetches nothing: its CSS and script are inline, so it opens from ``file://``. The
script (:data:`SCRIPT`) sorts tables, shows point tips on hover and toggles chart series from their
legend (the tips are the SVG ``<title>`` of each point, the browser's own tooltip without script);
it records any script error in ``<pre id="page-errors">`` (the Chromium test reads it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from snnergy.reporting.svg import esc

VERDICT_HEADING = "which regularizer?"
"""The (lower-case) end of the heading of every verdict section of ``report.md``."""

STYLE = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dee7;--accent:#1f77b4;--bg:#fff;--verdict:#eef5fc}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 6px}h2{font-size:20px;margin:34px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:17px;margin:24px 0 6px}p{margin:6px 0 10px;color:var(--fg)}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f5f8;padding:1px 4px;border-radius:3px}
.verdict{background:var(--verdict);border-left:5px solid var(--accent);border-radius:6px;padding:4px 20px 12px;margin:18px 0}
.verdict h2,.verdict h3{border:none;margin-top:12px}.verdict li{margin:5px 0}.verdict strong{color:#0b4f8a}
ul{padding-left:22px;margin:6px 0 12px}
.table-wrap{overflow:auto;max-height:470px;margin:8px 0 18px;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{padding:4px 9px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{background:#f4f6f9;position:sticky;top:0;cursor:pointer;user-select:none}
thead th:hover{background:#e8edf4}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
tbody tr:nth-child(even){background:#fafbfc}tbody tr:hover{background:#eef5fc}
.charts{display:flex;flex-wrap:wrap;gap:14px}
figure.chart{margin:10px 0;flex:0 1 calc(50% - 7px);min-width:0;border:1px solid var(--line);border-radius:6px;padding:8px}
@media (max-width:900px){figure.chart{flex-basis:100%}}
figure.chart svg{width:100%;height:auto;display:block;font-family:inherit}
svg .title{font-size:18px;font-weight:600;fill:var(--fg)}svg .tick{font-size:14px;fill:var(--muted)}
svg .label{font-size:15px;fill:var(--fg)}svg .plot{fill:none;stroke:#aab2bf}svg .grid{stroke:#e6e9ef}
svg .guide{stroke:#111;stroke-dasharray:2 3}svg .pt{stroke:#fff;stroke-width:.6}svg .sq{stroke:#222}svg .pt:hover{stroke:#000;stroke-width:2}
svg .bar:hover{opacity:.75}svg .series.off{display:none}
.legend{display:flex;flex-wrap:wrap;gap:4px 10px;padding:4px 6px 0;font-size:12px}
.key{border:0;background:none;cursor:pointer;font:inherit;color:var(--fg);padding:1px 2px}
.key.off{opacity:.35;text-decoration:line-through}
.swatch{display:inline-block;width:14px;height:10px;margin-right:5px;border-radius:2px;vertical-align:middle}
figcaption{font-size:12px;color:var(--muted);padding:4px 6px 0}
.tip{position:absolute;display:none;pointer-events:none;background:#1d2330;color:#fff;font-size:12px;padding:5px 8px;
border-radius:4px;max-width:420px;z-index:10;box-shadow:0 2px 6px rgba(0,0,0,.25)}
nav{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:14px;margin:2px 0 8px}nav a{color:var(--accent);text-decoration:none}
#page-errors:empty{display:none}#page-errors{color:#b00;background:#fee;padding:8px}
""".strip()

SCRIPT = """
(function(){
var errors=document.getElementById('page-errors');
window.addEventListener('error',function(e){errors.textContent+=(e.message||'error')+'\\n';});
function key(cell){var s=cell.textContent.trim();if(s===''||s==='n/a')return null;var n=parseFloat(s);return isNaN(n)?s:n;}
function sortBy(table,i,th){
  var asc=th.getAttribute('aria-sort')!=='ascending';
  Array.prototype.forEach.call(th.parentNode.cells,function(c){c.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',asc?'ascending':'descending');
  var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
  var keys=rows.map(function(r){return r.cells[i]?key(r.cells[i]):null;});
  var numeric=keys.every(function(k){return k===null||typeof k==='number';});
  var order=rows.map(function(_,j){return j;});
  order.sort(function(a,b){var x=keys[a],y=keys[b];
    if(x===null||y===null)return x===y?a-b:(x===null?1:-1);
    var c=numeric?x-y:String(x).localeCompare(String(y));return c===0?a-b:(asc?c:-c);});
  order.forEach(function(j){body.appendChild(rows[j]);});
}
Array.prototype.forEach.call(document.querySelectorAll('table.sortable'),function(table){
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.tabIndex=0;th.title='sort';
    th.addEventListener('click',function(){sortBy(table,i,th);});
    th.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();sortBy(table,i,th);}});
  });
});
var tip=document.createElement('div');tip.className='tip';document.body.appendChild(tip);
Array.prototype.forEach.call(document.querySelectorAll('svg .pt, svg .bar'),function(el){
  var t=el.querySelector('title');if(t){el.tip=t.textContent;el.removeChild(t);}});
document.addEventListener('mouseover',function(e){
  var el=e.target;
  if(!el.tip){tip.style.display='none';return;}
  tip.textContent=el.tip;tip.style.display='block';});
document.addEventListener('mousemove',function(e){
  if(tip.style.display==='block'){tip.style.left=(e.pageX+14)+'px';tip.style.top=(e.pageY+12)+'px';}});
Array.prototype.forEach.call(document.querySelectorAll('figure.chart .key'),function(button){
  button.addEventListener('click',function(){
    var figure=button.closest('figure'),i=button.getAttribute('data-series');
    button.classList.toggle('off');
    figure.querySelector('svg g.series[data-series="'+i+'"]').classList.toggle('off');});
});
document.documentElement.setAttribute('data-ready','1');
})();
""".strip()

_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<path>[^)]+)\)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)([^*]+?)\*(?![\w*])")


def inline(text: str) -> str:
    """One line of Markdown as escaped HTML with ``**bold**``, ``*italic*`` and ```code```.

    Example:
        >>> inline("**3.65x fewer** on `cmos45` for *T* <b>")
        '<strong>3.65x fewer</strong> on <code>cmos45</code> for <em>T</em> &lt;b&gt;'
    """
    pieces = re.split(r"`([^`]*)`", text)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(f"<code>{esc(piece)}</code>")
        else:
            out.append(_ITALIC.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", esc(piece))))
    return "".join(out)


def _cells(line: str) -> list[str]:
    """The cells of one pipe-table row (``| a | b |``), as :func:`~snnergy.reporting.tables.markdown_table` writes it."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [cell.strip() for cell in inner.split(" | ")]


def table_html(lines: Sequence[str]) -> str:
    """A pipe table (header, ``---`` row, body rows) as a sortable HTML table.

    Example:
        >>> print(table_html(["| a | b |", "| --- | --- |", "| x<1 | 0.5 |"]))
        <div class="table-wrap"><table class="sortable"><thead><tr><th scope="col">a</th><th scope="col">b</th></tr></thead><tbody><tr><td>x&lt;1</td><td>0.5</td></tr></tbody></table></div>
    """
    header = "".join(f'<th scope="col">{inline(c)}</th>' for c in _cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(line)) + "</tr>" for line in lines[2:])
    return (f'<div class="table-wrap"><table class="sortable"><thead><tr>{header}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def body_html(markdown: str, figures: Mapping[str, Sequence[str]] | None = None) -> str:
    """The page body of a report's Markdown (see the module docstring for the subset and the
    verdict sections); images whose path is in ``figures`` become those figures.

    Example:
        >>> text = "# R\\n\\n## Which regularizer?\\n\\nTarget: 0.9.\\n- **l1** at T = 4\\n\\n## Plots\\n\\n![a](plots/a.png)"
        >>> page = body_html(text, {"plots/a.png": ["<figure>A</figure>"]})
        >>> '<section class="verdict" id="verdict">' in page, "<li><strong>l1</strong> at T = 4</li>" in page
        (True, True)
        >>> '<div class="charts"><figure>A</figure></div>' in page
        True
    """
    figures = figures or {}
    out: list[str] = []
    lines = markdown.splitlines()
    in_verdict, verdicts, seen, i = False, 0, set(), 0
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        if heading:
            flush()
            level, title = len(heading.group(1)), heading.group(2)
            if in_verdict:
                out.append("</section>")
                in_verdict = False
            if level > 1 and title.strip().lower().endswith(VERDICT_HEADING):
                verdicts += 1
                out.append(f'<section class="verdict" id="{"verdict" if verdicts == 1 else f"verdict-{verdicts}"}">')
                in_verdict = True
            anchor = _slug(title)
            while anchor in seen:
                anchor += "-"
            seen.add(anchor)
            out.append(f'<h{level} id="{anchor}">{inline(title)}</h{level}>')
            i += 1
        elif line.startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(table_html(block))
        elif line.startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif _IMAGE.match(line):
            flush()
            shown = []
            while i < len(lines) and (image := _IMAGE.match(lines[i].rstrip())):
                path = image.group("path")
                shown += list(figures.get(path) or
                              [f'<p><a href="{esc(path)}">{esc(image.group("alt") or path)}</a></p>'])
                i += 1
            out.append(f'<div class="charts">{"".join(shown)}</div>')
        elif not line.strip():
            flush()
            i += 1
        else:
            paragraph.append(line)
            i += 1
    flush()
    if in_verdict:
        out.append("</section>")
    return "\n".join(out)


def render_html(markdown: str, figures: Mapping[str, Sequence[str]] | None = None) -> str:
    """The whole ``report.html`` page of a report's Markdown (title: its first heading).

    Example:
        >>> page = render_html("# snnergy report\\n\\nHello <you>.")
        >>> page.startswith("<!DOCTYPE html>"), "<title>snnergy report</title>" in page, "Hello &lt;you&gt;." in page
        (True, True, True)
    """
    first = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), "snnergy report")
    body = body_html(markdown, figures)
    links = re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', body)
    nav = "<nav>" + "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in links) + "</nav>" if links else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(first)}</title><style>{STYLE}</style></head>\n<body><main>\n"
        f'<pre id="page-errors"></pre>\n{body.replace("</h1>", "</h1>" + nav, 1)}\n'
        '<p class="generated"><small>Written by snnergy beside <code>report.md</code>, from the same text; '
        "hover a point for its configuration and T, click a column header to sort, a legend entry to hide "
        f"its series.</small></p>\n</main>\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


__all__ = ["SCRIPT", "STYLE", "VERDICT_HEADING", "body_html", "inline", "render_html", "table_html"]
