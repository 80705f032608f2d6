"""report.html: the report as one self-contained page (Jinja2, autoescaped, no scripts).

Every value from a message (subjects, headers, senders) is hostile until proven otherwise:
autoescaping is on for the whole template and nothing is marked safe except the chart, which is
our own base64 PNG. A Content-Security-Policy forbids scripts and remote loads besides.
"""

from __future__ import annotations

import base64
from datetime import datetime

from jinja2 import Environment, StrictUndefined

from guardmail.export.summary import Report, timeline

TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Evidence report: {{ r.tenant }}, {{ r.period }}</title>
<style>
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; margin: 2em; color: #111; }
h1 { font-size: 18pt; } h2 { font-size: 14pt; margin-top: 2em; } h3 { font-size: 11pt; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 2px 5px; text-align: left; vertical-align: top; }
th { background: #eee; }
.facts th { width: 14em; }
.mono, .hash { font-family: "DejaVu Sans Mono", monospace; font-size: 8pt; }
.hash { word-break: break-all; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: 0.5em; }
.item { page-break-inside: avoid; border-top: 1px solid #ccc; margin-top: 1em; }
.detail { page-break-before: always; }
img { max-width: 100%; }
.flag { color: #a00000; font-weight: bold; } tr.warn td { background: #ffe8c0; }
@media print { body { margin: 0; } .detail h2 { page-break-before: always; } }
</style>
</head>
<body>
<h1>Evidence report</h1>
<table class="facts">
{% for label, value in r.protected or [("Protected person", r.tenant)] %}
<tr><th>{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}
<tr><th>Offenders</th><td>{{ r.offenders | join(", ") or "-" }}</td></tr>
<tr><th>Period</th><td>{{ r.period }}</td></tr>
<tr><th>First and last item</th><td>{{ when(r.first) }} &ndash; {{ when(r.last) }}</td></tr>
<tr><th>Items</th><td>{{ r.rows | length }}
  {%- if r.per_channel %} ({% for c, n in r.per_channel %}{{ c }}: {{ n }}
  {%- if not loop.last %}, {% endif %}{% endfor %}){% endif %}</td></tr>
<tr><th>Warning sent</th><td>{% for w in r.warnings %}{{ w.warning.sent_at }} to
  {{ w.warning.to }}{% if not loop.last %}; {% endif %}{% else %}none{% endfor %}</td></tr>
<tr><th>Journal entries</th><td>seq {{ r.journal_first }} to {{ r.journal_last }}</td></tr>
<tr><th>Generated</th><td>{{ when(r.generated_at) }} by guardmail {{ r.version }}</td></tr>
</table>

<h2>Timeline</h2>
<img alt="Items per day per offender" src="data:image/png;base64,{{ chart }}">
<table>
<tr><th>Day (UTC)</th><th>Offender</th><th>What</th></tr>
{% for e in events %}
<tr{% if e.what == "warning" %} class="warn"{% endif %}><td>{{ e.day }}</td>
<td>{{ e.offender }}</td>
<td>{% if e.what == "items" %}{{ e.count }} item{{ "s" if e.count != 1 }}
{%- if e.after_warning %} (&#9650; {{ e.after_warning }} after the warning){% endif %}
{%- else %}{{ e.text }}{% endif %}</td></tr>
{% endfor %}
</table>

<h2>Per offender</h2>
<table>
<tr><th>Offender</th><th>Items</th><th>After the warning</th><th>First</th><th>Last</th>
<th>Channels</th><th>Wrote from</th></tr>
{% for o in r.per_offender %}
<tr><td>{{ o.offender }}</td><td>{{ o.items }}</td><td>{{ o.after_warning }}</td>
<td>{{ when(o.first) }}</td><td>{{ when(o.last) }}</td><td>{{ o.channels }}</td>
<td>{{ o.addresses | join(", ") }}</td></tr>
{% endfor %}
</table>

{% for w in r.warnings %}
<h2>Warning sent to {{ w.warning.offender }}</h2>
<table class="facts">
<tr><th>Sent</th><td>{{ w.warning.sent_at }}</td></tr>
<tr><th>To</th><td>{{ w.warning.to }}</td></tr>
<tr><th>Message-ID</th><td>{{ w.warning.message_id }}</td></tr>
<tr><th>Subject</th><td>{{ w.subject }}</td></tr>
<tr><th>File</th><td class="mono">{{ w.warning.file }}</td></tr>
<tr><th>SHA-256</th><td class="hash">{{ w.warning.sha256 }}</td></tr>
</table>
<pre>{{ w.text }}</pre>
{% endfor %}

{% if r.notes %}<h2>Case journal: what the protected person did</h2>
{% for n in r.notes %}<h3>{{ when(n.time) }} UTC &middot; journal entry {{ n.seq }}</h3>
<pre>{{ n.text }}</pre>
{% for name, sha, size in n.files %}<p>File <span class="mono">{{ name }}</span> ({{ size }} bytes),
SHA-256 <span class="hash">{{ sha }}</span></p>{% endfor %}
{% endfor %}{% endif %}

<h2>How to verify this bundle</h2>
<pre>{{ r.verification }}</pre>

<h2>Items</h2>
<table>
<tr><th>#</th><th>Received (UTC)</th><th>Sent (UTC)</th><th>Channel</th><th>Origin</th><th>From</th>
<th>Subject or first words</th><th>SHA-256</th></tr>
{% for row in r.rows %}
<tr><td><a href="#item-{{ row.item.index }}">{{ row.item.index }}</a>
{%- if row.after_warning %} &#9650;{% endif %}</td>
<td>{{ when(row.item.received_at) }}</td><td>{{ when(row.content.sent) }}</td>
<td>{{ row.item.channel }}{% if row.item.direction == "outgoing" %} &rarr; sent by the person
{%- elif row.item.room %} (room){% endif %}</td>
<td>{{ "imported" if row.item.imported else "live" }}</td>
<td>{{ row.content.sender or row.sender }}</td>
<td>{{ row.title }}{% for f in row.flags %}<div class="flag">{{ f }}</div>{% endfor %}</td>
<td class="hash">{{ row.item.sha256 }}</td></tr>
{% endfor %}
</table>

<div class="detail">
<h2>Item details</h2>
{% for row in r.rows %}{% set i = row.item %}
<div class="item" id="item-{{ i.index }}">
<h3>Item {{ i.index }} &middot; journal seq {{ i.seq }}</h3>
<table class="facts">
<tr><th>File</th><td class="mono">{{ i.file }}</td></tr>
<tr><th>SHA-256</th><td class="hash">{{ i.sha256 }}</td></tr>
<tr><th>Received</th><td>{{ when(i.received_at) }} UTC ({{ i.size }} bytes)</td></tr>
<tr><th>Sent</th><td>{{ when(row.content.sent) }} UTC
  {%- if row.content.date_header %} (Date: {{ row.content.date_header }}){% endif %}</td></tr>
<tr><th>From</th><td>{{ row.content.sender or row.sender }}</td></tr>
<tr><th>To</th><td>{{ row.content.to }}</td></tr>
{% if row.content.cc %}<tr><th>Cc</th><td>{{ row.content.cc }}</td></tr>{% endif %}
<tr><th>Subject</th><td>{{ row.content.subject or i.subject }}</td></tr>
{% for f in row.flags %}<tr><th>Flag</th><td class="flag">{{ f }}</td></tr>{% endfor %}
<tr><th>Channel, account</th><td>{{ i.channel }}, {{ i.account }}</td></tr>
<tr><th>Source reference</th><td class="mono">{{ i.source_ref }}</td></tr>
<tr><th>Offender</th><td>{{ i.offender }}</td></tr>
<tr><th>Matched</th><td>{{ i.rule }} in {{ i.header }}</td></tr>
<tr><th>Action</th><td>{{ i.action }}{% if i.done %}: {{ i.done }}{% endif %}</td></tr>
</table>
{% if r.bodies %}<pre>{{ row.content.text or "(no readable text)" }}</pre>
{% if row.content.attachments %}<table>
<tr><th>Attachment</th><th>Type</th><th>Bytes</th><th>SHA-256</th></tr>
{% for a in row.content.attachments %}<tr><td>{{ a.name }}</td><td>{{ a.content_type }}</td>
<td>{{ a.size }}</td><td class="hash">{{ a.sha256 }}</td></tr>{% endfor %}
</table>{% endif %}
{% for n in row.content.notes %}<p>Note: {{ n }}.</p>{% endfor %}{% endif %}
<details><summary>Full headers</summary>
<table class="mono">
{% for name, value in row.headers %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table></details>
</div>
{% endfor %}
</div>
</body>
</html>
"""


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else "-"


_ENV = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_TEMPLATE = _ENV.from_string(TEMPLATE)


def render_html(report: Report, *, chart_png: bytes) -> str:
    return _TEMPLATE.render(
        r=report,
        chart=base64.b64encode(chart_png).decode("ascii"),
        when=_when,
        events=timeline(report),
    )
