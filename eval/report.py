"""A run's files: `metrics.json`, `scores.jsonl`, `report.md` and a self-contained `report.html`.

    write_report(run)        # run: an `eval.runner.EvalRun`

`metrics.json` holds every metric with the judge that decided it and the number of cases behind it,
plus breakdowns per case type and per difficulty; `scores.jsonl` the per-case values (what
`tutor eval compare` resamples). The HTML report embeds its plots (per case type, per difficulty,
latency) as base64 PNGs and lists the worst cases with question, answer, sources and the judge's
reasoning, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from eval.scoring import METRIC_BY_NAME, breakdown

HEADLINE = ("retrieval.hit@5", "citations.recall", "correctness.score", "declines.accuracy")
WORST_CASES = 10
_QUALITY_KEYS = ("correctness.score", "declines.correct", "retrieval.hit@5", "citations.recall",
                 "faithfulness.score")


def case_quality(values: dict) -> float:
    """One number per case for ranking the worst: the mean of its quality values (a leak or an error
    makes it 0)."""
    if values.get("run.error") or values.get("homework.leaked"):
        return 0.0
    present = [values[k] for k in _QUALITY_KEYS if values.get(k) is not None]
    return sum(present) / len(present) if present else 1.0


def worst_cases(run, limit: int = WORST_CASES) -> list[dict]:
    """The `limit` lowest-quality cases, with what a reader needs to see why."""
    ranked = sorted(run.scores, key=lambda s: (case_quality(s["values"]), s["id"]))
    out = []
    for score in ranked[:limit]:
        row = run.rows.get(score["id"], {})
        answer = row.get("answer") or {}
        out.append({
            "id": score["id"], "type": score["type"], "difficulty": score["difficulty"],
            "question": score["question"], "quality": case_quality(score["values"]),
            "answer": answer.get("text", ""), "refused": answer.get("refused"),
            "citations": [f"[{c['n']}] {c.get('title') or c['locator'].get('path', '')}"
                          for c in answer.get("citations", [])],
            "values": {k: v for k, v in score["values"].items() if v is not None},
            "details": score["details"],
        })
    return out


def metrics_document(run) -> dict:
    return {
        "metrics": run.metrics,
        "by_type": breakdown(run.scores, "type"),
        "by_difficulty": breakdown(run.scores, "difficulty"),
        "cases": len(run.scores),
        "answered_now": run.answered,
        "errors": run.errors,
        "judge": run.settings.get("judge", {}),
        "dataset": run.settings.get("dataset", {}),
    }


def plot_png(groups: dict[str, dict[str, float]], title: str) -> str:
    """Grouped bars of the headline metrics per group, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 3.6), dpi=100)
    width = 0.8 / len(HEADLINE)
    for i, metric in enumerate(HEADLINE):
        heights = [groups[g].get(metric) or 0.0 for g in names]
        ax.bar([x + i * width for x in range(len(names))], heights, width, label=metric)
    ax.set_xticks([x + width * (len(HEADLINE) - 1) / 2 for x in range(len(names))], names, rotation=20)
    ax.set_ylim(0, 1.25)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=len(HEADLINE), loc="upper center", frameon=False)
    return _png(fig)


def latency_png(scores: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for key, label in (("latency.total_s", "total"), ("latency.first_token_s", "first token")):
        values = [s["values"][key] for s in scores if s["values"].get(key) is not None]
        if values:
            ax.hist(values, bins=min(30, max(5, len(values) // 2)), alpha=0.6, label=label)
    ax.set_xlabel("seconds")
    ax.set_ylabel("cases")
    ax.set_title("Answer latency")
    ax.legend()
    return _png(fig)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_report(document: dict, worst: list[dict], title: str) -> str:
    lines = [f"# {title}", "", f"{document['cases']} cases; judge: {document['judge'].get('name', '?')}", "",
             "| metric | value | n | judged by |", "|---|---|---|---|"]
    for name, entry in document["metrics"].items():
        lines.append(f"| {name} | {_fmt(entry['value'])} | {entry['n']} | {entry['judge']} |")
    for heading, key in (("By case type", "by_type"), ("By difficulty", "by_difficulty")):
        groups = document[key]
        lines += ["", f"## {heading}", "", "| group | " + " | ".join(HEADLINE) + " |",
                  "|---" * (len(HEADLINE) + 1) + "|"]
        lines += [f"| {g} | " + " | ".join(_fmt(v.get(m)) for m in HEADLINE) + " |" for g, v in groups.items()]
    lines += ["", "## Worst cases", ""]
    for case in worst:
        lines += [f"### {case['id']} ({case['type']}, {case['difficulty']}): quality {case['quality']:.2f}", "",
                  f"**Question:** {case['question']}", "", "**Answer:**", "", case["answer"] or "(no answer)", ""]
        lines += [f"- {c}" for c in case["citations"]]
        reasons = {k: v for k, v in case["details"].items() if k in ("correctness_reason", "leak", "error")}
        lines += [f"- {k}: {v}" for k, v in reasons.items()] + [""]
    if document["errors"]:
        lines += ["## Errors", ""] + [f"- {e}" for e in document["errors"]]
    return "\n".join(lines) + "\n"


def summary_text(run) -> str:
    """A few lines for the terminal: what ran, the headline metrics, where the report is."""
    from_file = len(run.scores) - run.answered
    lines = [f"{len(run.scores)} cases ({run.answered} answered now, {from_file} from results.jsonl); "
             f"judge: {run.settings.get('judge', {}).get('name', '?')}"]
    for name in ("retrieval.hit@5", "retrieval.recall@5", "retrieval.mrr", "citations.validity",
                 "citations.precision", "citations.recall",
                 "correctness.score", "faithfulness.score", "declines.accuracy", "homework.leak_rate",
                 "latency.total_p50_s", "latency.total_p95_s"):
        if name in run.metrics:
            lines.append(f"  {name:<24} {run.metrics[name]['value']:.3f}")
    if run.errors:
        lines.append(f"  {len(run.errors)} case(s) raised errors; run again with the same --out to retry them")
    lines.append(f"report: {run.out_dir / 'report.html'}")
    return "\n".join(lines)


def write_report(run) -> dict[str, Path]:
    """Write the run's files into `run.out_dir`; returns their paths by name."""
    from eval.report_html import render_html

    out: Path = run.out_dir
    document = metrics_document(run)
    paths = {name: out / name for name in ("metrics.json", "scores.jsonl", "report.md", "report.html")}
    paths["metrics.json"].write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    with open(paths["scores.jsonl"], "w", encoding="utf-8") as fh:
        for score in run.scores:
            fh.write(json.dumps(score, ensure_ascii=False) + "\n")
    worst = worst_cases(run)
    title = f"Eval of {Path(document['dataset'].get('path', 'dataset')).name} ({run.settings['backend']['name']})"
    paths["report.md"].write_text(markdown_report(document, worst, title), encoding="utf-8")
    plots = {
        "Per case type": plot_png(document["by_type"], "Per case type"),
        "Per difficulty": plot_png(document["by_difficulty"], "Per difficulty"),
        "Latency": latency_png(run.scores),
    }
    descriptions = {name: METRIC_BY_NAME[name].description for name in document["metrics"]}
    paths["report.html"].write_text(
        render_html(title, document, descriptions, plots, worst, run.settings, HEADLINE), encoding="utf-8")
    return paths
