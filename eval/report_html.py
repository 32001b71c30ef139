"""The HTML page of an eval run: one self-contained file (inline CSS, plots as data: URIs).

Kept apart from `eval.report` because it is mostly a template. Jinja2 autoescapes everything, so a
question or an answer holding HTML shows as text.
"""

from __future__ import annotations

import json

from jinja2 import Environment, select_autoescape

TEMPLATE = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.case { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; margin: 1em 0; }
.answer { white-space: pre-wrap; background: #fafafa; padding: .5em; }
.muted { color: #666; font-size: .9em; } img { max-width: 100%; }
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="muted">{{ document.cases }} cases &middot; judge: {{ document.judge.name }}
 &middot; backend: {{ settings.backend.name }} {{ settings.backend.model }}
 &middot; index built {{ settings.index.built_at }}</p>

<h2>Metrics</h2>
<table><tr><th>metric</th><th>value</th><th>n</th><th>judged by</th><th>meaning</th></tr>
{% for name, entry in document.metrics.items() %}
<tr><td>{{ name }}</td><td class="num">{{ fmt(entry.value) }}</td><td class="num">{{ entry.n }}</td>
<td>{{ entry.judge }}</td><td class="muted">{{ descriptions[name] }}</td></tr>
{% endfor %}</table>

{% for heading, png in plots.items() %}
<h2>{{ heading }}</h2>
<img src="data:image/png;base64,{{ png }}" alt="{{ heading }}">
{% endfor %}

{% for heading, groups in (("By case type", document.by_type), ("By difficulty", document.by_difficulty)) %}
<h2>{{ heading }}</h2>
<table><tr><th>group</th>{% for m in headline %}<th>{{ m }}</th>{% endfor %}</tr>
{% for group, values in groups.items() %}
<tr><td>{{ group }}</td>{% for m in headline %}<td class="num">{{ fmt(values.get(m)) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}

<h2>Worst cases</h2>
{% for case in worst %}
<div class="case">
<h3>{{ case.id }} <span class="muted">{{ case.type }}, {{ case.difficulty }}, quality {{ fmt(case.quality) }}
{% if case.refused %}, declined: {{ case.refused }}{% endif %}</span></h3>
<p><b>Question:</b> {{ case.question }}</p>
<div class="answer">{{ case.answer or "(no answer)" }}</div>
{% if case.citations %}<p><b>Sources:</b></p>
<ul>{% for c in case.citations %}<li>{{ c }}</li>{% endfor %}</ul>{% endif %}
{% if case.details.correctness_reason %}<p><b>Judge:</b> {{ case.details.correctness_reason }}</p>{% endif %}
{% for u in case.details.get("unsupported", [])[:5] %}
<p class="muted">unsupported [{{ u.cited }}]: &ldquo;{{ u.sentence }}&rdquo; ({{ u.reason }})</p>
{% endfor %}
{% if case.details.leak %}<p><b>Leak:</b> {{ case.details.leak }}</p>{% endif %}
{% if case.details.error %}<p><b>Error:</b> {{ case.details.error }}</p>{% endif %}
{% if case.details.retrieved %}<p class="muted">retrieved: {{ case.details.retrieved | join("; ") }}</p>{% endif %}
<p class="muted">{% for k, v in case["values"].items() %}{{ k }}={{ fmt(v) }} {% endfor %}</p>
</div>
{% endfor %}

{% if document.errors %}<h2>Errors</h2><ul>{% for e in document.errors %}<li>{{ e }}</li>{% endfor %}</ul>{% endif %}

<h2>Settings</h2>
<pre>{{ settings_json }}</pre>
</body></html>
"""


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render_html(title: str, document: dict, descriptions: dict[str, str], plots: dict[str, str],
                worst: list[dict], settings: dict, headline: tuple[str, ...]) -> str:
    """The page; `headline` names the metrics shown per case type and per difficulty."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(TEMPLATE)
    return template.render(
        title=title, document=document, descriptions=descriptions, plots=plots, worst=worst,
        settings=settings, settings_json=json.dumps(settings, indent=1, default=str), headline=headline,
        fmt=_fmt,
    )
