"""The smoke test as one self-contained HTML page, to look at and to share.

Everything is inside the file: images as `data:` URIs, the style in a `<style>` element, no
script, no link to anything outside. Every string that came from the model or the user (answers,
prompts, paths) is HTML-escaped, so an answer that reads `<script>` shows as text.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import Any

from weightprep.errors import InputError
from weightprep.io.atomic import write_atomic
from weightprep.smoke.image import load_image

THUMB = 320  # the longest side of an embedded image, in pixels

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;
background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top;font-size:14px} th{background:#f3f3f3}
.pass{color:#0b6b2b;font-weight:600} .fail{color:#b00020;font-weight:600}
.banner{padding:8px 12px;border-radius:4px;font-weight:600;display:inline-block}
.banner.pass{background:#e6f4ea} .banner.fail{background:#fde7ea}
.card{display:flex;align-items:flex-start;gap:16px;border:1px solid #ddd;border-radius:6px;
padding:12px;margin:12px 0}
.card img{width:auto;height:auto;max-width:320px;max-height:320px;border:1px solid #bbb;flex:none}
.card table{width:100%}
.answer{white-space:pre-wrap;font-family:ui-monospace,monospace;background:#f7f7f7;padding:2px 4px}
.note{color:#555} code{font-size:12px;word-break:break-all}
"""


def _data_uri(picture: dict) -> str | None:
    """A JPEG thumbnail of the image as a data: URI; None when its file is gone."""
    try:
        img = load_image(None if picture["path"] is None else Path(picture["path"]))
    except InputError:
        return None
    img.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _mark(ok: bool) -> str:
    return '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'


def _check_rows(found: list[dict]) -> str:
    return "".join(
        f"<tr><td>{escape(c['name'])}</td><td>{_mark(c['ok'])}</td>"
        f"<td>{escape(c['detail'])}</td></tr>"
        for c in found
    )


def _figure(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def render(doc: dict[str, Any]) -> str:
    """The page for a smoke-test report (`Report.to_dict()`): header and verdict; where it ran
    (device, dtype, load time, tokens/s, peak memory); the run-wide checks (the language check
    with its figures); each image as a thumbnail with every prompt, answer and check; what was
    loaded from where with sha256 digests; notes."""
    e = escape
    results = doc["results"]
    all_checks = [c for r in results for c in r["checks"]] + doc["checks"]
    failed = [c for c in all_checks if not c["ok"]]
    tokens = sum(r["tokens"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    rate = (
        f"{tokens / seconds:.1f} tokens/s ({tokens} tokens in {seconds:.2f} s)" if seconds else "—"
    )
    verdict = (
        f'<div class="banner pass">PASS: all {len(all_checks)} checks passed</div>'
        if not failed
        else f'<div class="banner fail">FAIL: {len(failed)} of {len(all_checks)} checks '
        "failed</div>"
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>smoke-test {e(doc['model'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>weightprep smoke-test: {e(doc['model'])} ({e(doc['backend'])})</h1>",
        verdict,
    ]
    if doc["example"]:
        out.append(
            '<p class="note">The built-in example: tiny models with random vision weights. It '
            "proves the path runs and the checks work, not that real weights caption well.</p>"
        )
    kind, peak = doc["peak_memory"]["kind"], doc["peak_memory"]["bytes"]
    quant = "" if doc["quantize"] == "none" else f", {e(doc['quantize'])}"
    out += [
        "<h2>Where it ran</h2><table>",
        f"<tr><th>device</th><td>{e(doc['device'])}</td></tr>",
        f"<tr><th>dtype</th><td>{e(doc['dtype'])} ({e(doc['dtype_reason'])}){quant}</td></tr>",
        f"<tr><th>load time</th><td>{doc['load_seconds']:.1f} s</td></tr>",
        f"<tr><th>generation</th><td>{rate}</td></tr>",
        f"<tr><th>peak memory</th><td>{_gib(peak)} ({e(kind)})</td></tr>",
        f"<tr><th>answers</th><td>{len(results)} ({len(doc['images'])} images × "
        f"{len({r['prompt'] + r['mode'] for r in results})} prompts)</td></tr>",
        "</table>",
        "<h2>Checks of the whole run</h2>",
    ]
    if doc["checks"]:
        out.append("<table><tr><th>check</th><th></th><th>figure</th></tr>")
        out.append(_check_rows(doc["checks"]) + "</table>")
    lang = doc.get("language")
    if lang:
        figures = {k: v for k, v in lang.items() if k not in ("ok", "detail")}
        out.append(
            "<p>language check figures: "
            + ", ".join(f"{e(str(k))} {e(_figure(v))}" for k, v in figures.items())
            + "</p>"
        )
    per_answer = sorted({c["name"] for r in results for c in r["checks"]})
    if per_answer:
        counts = ", ".join(
            f"{e(n)}: {sum(c['ok'] for r in results for c in r['checks'] if c['name'] == n)}"
            f"/{sum(1 for r in results for c in r['checks'] if c['name'] == n)} pass"
            for n in per_answer
        )
        out.append(f"<p>per answer: {counts}</p>")
    out.append("<h2>Images and answers</h2>")
    for pic in doc["images"]:
        uri = _data_uri(pic)
        img = (
            f'<img src="{uri}" alt="{e(pic["name"])}">'
            if uri
            else f'<p class="note">(image {e(pic["name"])} no longer readable)</p>'
        )
        digest = f"sha256 <code>{e(pic['sha256'])}</code>" if pic["sha256"] else "drawn at run time"
        rows = []
        for r in (r for r in results if r["image"] == pic["name"]):
            rate_r = f"{r['tokens']} tokens, {r['tokens_per_second']:.1f} tokens/s"
            rows.append(
                f"<tr><td>[{e(r['mode'])}] {e(r['prompt'])}</td>"
                f'<td><span class="answer">{e(r["answer"])}</span><br>'
                f'<span class="note">{rate_r}</span></td>'
                f"<td><table>{_check_rows(r['checks'])}</table></td></tr>"
            )
        out += [
            '<div class="card">',
            img,
            f"<div><p><b>{e(pic['name'])}</b> ({pic['width']}×{pic['height']}, {digest})</p>",
            "<table><tr><th>prompt</th><th>answer</th><th>checks</th></tr>",
            *rows,
            "</table></div></div>",
        ]
    out.append("<h2>What was loaded, from where</h2>")
    for src in doc["sources"]:
        out.append(f"<p><b>{e(src['flag'])}</b> {e(src['ref'])}: {e(src['where'])}</p>")
        if src["files"]:
            out.append("<table><tr><th>file</th><th>bytes</th><th>sha256</th></tr>")
            out += [
                f"<tr><td>{e(f['path'])}</td><td>{f['bytes']}</td>"
                f"<td><code>{e(f['sha256'])}</code></td></tr>"
                for f in src["files"]
            ]
            out.append("</table>")
    if doc["notes"]:
        out.append("<h2>Notes</h2><ul>")
        out += [f"<li>{e(n)}</li>" for n in doc["notes"]]
        out.append("</ul>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_report(doc: dict[str, Any], path: Path) -> Path:
    """Write the page for `doc` (`Report.to_dict()`) to `path`, whole or not at all."""
    write_atomic(Path(path), render(doc).encode("utf-8"))
    return Path(path)
