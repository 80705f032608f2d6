"""Branch coverage floors for the parts that hold the promises: ``core/``, ``vault/``, the pipeline.

Usage (after ``pytest --cov=guardmail --cov-branch``)::

    python tools/coverage_floor.py [.coverage]

Prints coverage.py's figure (statements and branches covered, over all of them) per area and
exits 1 if an area is below its floor. The floors sit a little under what the suite measures, so
a change that drops tests for these parts fails CI; raise them as coverage grows.
"""

from __future__ import annotations

import io
import sys

from coverage import Coverage
from coverage.exceptions import NoDataError

FLOORS = {  # area under guardmail/ -> minimum percent
    "core/": 95.0,
    "vault/": 95.0,
    "pipeline.py": 92.0,
}


def area_percent(cov: Coverage, area: str) -> float:
    pattern = f"*/guardmail/{area}" + ("*" if area.endswith("/") else "")
    return float(cov.report(include=[pattern], omit=["*/confusables_data.py"], file=io.StringIO()))


def main(argv: list[str]) -> int:
    cov = Coverage(data_file=argv[1] if len(argv) > 1 else ".coverage")
    cov.load()
    failed = False
    for area, floor in FLOORS.items():
        try:
            percent = area_percent(cov, area)
        except NoDataError as exc:
            print(f"coverage_floor: {area}: {exc}", file=sys.stderr)
            return 2
        ok = percent >= floor
        failed |= not ok
        print(f"coverage {area:12} {percent:5.1f}% (floor {floor:.0f}%)" + ("" if ok else " BELOW"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
