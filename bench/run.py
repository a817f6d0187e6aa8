"""Run the benchmarks in bench/*_bench.py and rewrite BENCHMARKS.md.

Every figure is a ratio against a baseline measured in the same run on the same machine, never
an absolute time compared across runs. Each module's rows are kept in bench/results/NAME.json
(with the machine and date of the run that made them), so `python bench/run.py NAME` refreshes
one section and BENCHMARKS.md is always assembled from every section's latest run.

Row keys: section, name, value, unit, baseline (what was measured against), baseline_value,
ratio, goal (text such as ">= 0.8x"), met (bool or None), note; or section + table (markdown).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUTPUT = HERE.parent / "BENCHMARKS.md"


def machine() -> dict[str, Any]:
    """What this run ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import numpy

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def discover() -> dict[str, Path]:
    """Benchmark modules by short name (bench/publish_bench.py -> publish)."""
    return {p.name.removesuffix("_bench.py"): p for p in sorted(HERE.glob("*_bench.py"))}


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    spec.loader.exec_module(module)
    return module


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return "" if value is None else str(value)


def render() -> str:
    """BENCHMARKS.md from every stored section."""
    lines = [
        "# ringfence benchmarks",
        "",
        "Written by `make bench` (bench/run.py). Each figure is a ratio against a baseline "
        "measured in the same run on the same machine; absolute times are shown for context only.",
        "",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        m = data["machine"]
        lines += [
            f"## {data['title']}",
            "",
            f"_{m['date']} · {m['cpu']} · {m['cores']} cores · {m['memory_gib']} GiB · "
            f"Python {m['python']} · numpy {m['numpy']} · {data['seconds']:.0f} s_",
            "",
        ]
        if data.get("error"):
            lines += [f"**This section failed:** `{data['error']}`", ""]
        rows = [r for r in data["rows"] if "table" not in r]
        if rows:
            lines += [
                "| figure | value | baseline | ratio | goal | met | note |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in rows:
                value = f"{_fmt(r.get('value'))} {r.get('unit', '')}".strip()
                base = r.get("baseline") or ""
                if r.get("baseline_value") is not None:
                    base = f"{base}: {_fmt(r['baseline_value'])} {r.get('unit', '')}".strip()
                ratio = f"{_fmt(r['ratio'])}x" if r.get("ratio") is not None else ""
                met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
                lines.append(
                    f"| {r['name']} | {value} | {base} | {ratio} | {r.get('goal', '')} | {met} "
                    f"| {r.get('note', '')} |"
                )
            lines.append("")
        for r in data["rows"]:
            if "table" in r:
                if r.get("name"):
                    lines += [f"**{r['name']}**", ""]
                lines += [r["table"].rstrip(), ""]
                if r.get("note"):
                    lines += [r["note"], ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    modules = discover()
    chosen = argv or list(modules)
    unknown = [n for n in chosen if n not in modules]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(modules)}")
        return 2
    RESULTS.mkdir(exist_ok=True)
    failed = 0
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        module = load(modules[name])
        rows: list[dict[str, Any]] = []
        error = None
        try:
            rows = list(module.run())
        except Exception as exc:
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
            failed += 1
        for row in rows:
            print("  ", {k: v for k, v in row.items() if k != "table"})
        data = {
            "title": getattr(module, "TITLE", name),
            "machine": machine(),
            "seconds": time.perf_counter() - started,
            "rows": rows,
            "error": error,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
