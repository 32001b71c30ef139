"""Evaluation: datasets, metrics, judges, the runner, reports and comparisons (`tutor eval`).

    dataset.py      question sets (JSONL), checked case by case with the line named
    metrics.py      pure measures: retrieval hit/recall/MRR, ALCE-style citations, token F1, leaks
    judges.py       who decides correctness and support: `lexical`, `embedding` (and the registry)
    judge_llm.py    the `llm` judge: rubric prompts, forgiving JSON parsing, a verdict cache
    scoring.py      per-case values from answers + judges, and the table of named metrics
    runner.py       answers every case concurrently and resumably (`results.jsonl`), with lineage
    report.py       metrics.json, scores.jsonl, report.md, plots   (report_html.py: the HTML page)
    compare.py      two runs: deltas with paired bootstrap CIs, flipped cases
    gate.py         thresholds TOML -> pass/fail for CI
    generate.py     synthetic question sets from the course index, quotes checked verbatim
    feedback.py     thumbs-down chats and instructor corrections -> eval cases
"""
