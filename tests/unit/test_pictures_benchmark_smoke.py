"""`benchmarks/pictures.py --quick` runs end to end; its figures are never asserted on."""

from __future__ import annotations

from tests.benchmark_runs import run_benchmark


def test_pictures_benchmark_reports_every_figure_and_its_baseline() -> None:
    """Each figure (timeline, diagram, page cold and warm) and its baseline ran and is > 0."""
    report = run_benchmark("pictures.py", timeout=300)
    assert report["events"] > 1000 and report["rounds"] == 1
    figures = report["figures"]
    assert set(figures) == {"timeline", "diagram", "page_cold", "page"}
    for figure in figures.values():
        assert figure["median_s"] > 0 and figure["baseline_median_s"] > 0
        assert figure["baseline"] in ("read", "read_flat")
