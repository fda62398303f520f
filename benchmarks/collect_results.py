"""Rebuild BENCHMARKS.md from its header and the section files in benchmarks/results/.

    python benchmarks/collect_results.py
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "core_coverage", "third_party_coverage", "core_vs_torch_pruning", "tracing", "tracer_choice", "core_fuzz",
    "obproxsg", "pipeline",
    "examples", "distributed", "adacof", "adacof_quality",
]


def _demote_headings(text: str) -> str:
    """One more ``#`` on every heading outside code fences, so each file is one section."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append("#" + line if line.startswith("#") and not fenced else line)
    return "\n".join(out)


def main() -> None:
    results = HERE / "results"
    files = sorted(results.glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    parts = [(HERE / "BENCHMARKS_HEADER.md").read_text().rstrip()]
    for f in files:
        text = f.read_text().strip()
        text = _demote_headings(text)
        parts.append(f"<!-- from benchmarks/results/{f.name} -->\n{text}")
    (HERE.parent / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
