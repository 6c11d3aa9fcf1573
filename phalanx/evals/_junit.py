"""An eval report as JUnit XML, the format CI systems read test results in.

One `<testsuite>` per run scored (named `RUBRIC:RUN`), one `<testcase>` per criterion
(`classname` the rubric, `name` the criterion); a criterion that did not pass has a
`<failure>` whose message is its detail (and whose text lists the evidence).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ._score import EvalReport


def junit_xml(report: EvalReport) -> str:
    """The report as a JUnit XML document."""
    root = ET.Element(
        "testsuites",
        name=f"phalanx eval {report.rubric}",
        tests=str(sum(len(r.results) for r in report.runs)),
        failures=str(sum(not c.passed for r in report.runs for c in r.results)),
    )
    for run in report.runs:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"{report.rubric}:{run.run_id}",
            tests=str(len(run.results)),
            failures=str(sum(not c.passed for c in run.results)),
        )
        for result in run.results:
            case = ET.SubElement(suite, "testcase", classname=report.rubric, name=result.criterion)
            score = "none" if result.score is None else f"{result.score:g}"
            ET.SubElement(
                case, "system-out"
            ).text = f"score {score} (threshold {result.threshold:g}): {result.detail}"
            if not result.passed:
                failure = ET.SubElement(
                    case, "failure", message=result.detail, type=f"eval.{result.evaluator}"
                )
                failure.text = "\n".join(result.evidence) or result.detail
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
