"""The timeline: items per day per offender, as a stacked bar chart in PNG bytes.

Drawn with matplotlib's object API on the Agg canvas directly: no pyplot, no global backend
state, no display needed, safe in a daemon or a test run.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Offender names come from the operator's config, but '$' would still switch on mathtext.
_MATHTEXT = str.maketrans({"$": r"\$"})

MAX_LEGEND = 12
MAX_TICKS = 12


def timeline_png(
    per_day: dict[str, dict[date, int]], *, warned: tuple[date, ...] = (), dpi: int = 150
) -> bytes:
    """A PNG of ``per_day`` (offender -> day -> count); every day of the span gets a slot, and
    each day in ``warned`` (a warning was sent) a dashed line labelled "warning"."""
    fig = Figure(figsize=(8.0, 3.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    days = sorted({d for counts in per_day.values() for d in counts})
    if not days:
        ax.text(0.5, 0.5, "no items", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        span = [days[0] + timedelta(days=i) for i in range((days[-1] - days[0]).days + 1)]
        x = list(range(len(span)))  # day numbers: labelled below, no date converters needed
        bottom = [0] * len(span)
        ranked = sorted(per_day, key=lambda name: -sum(per_day[name].values()))
        for n, name in enumerate(ranked):
            heights = [per_day[name].get(d, 0) for d in span]
            label = name.translate(_MATHTEXT) if n < MAX_LEGEND else "_nolegend_"
            ax.bar(x, heights, bottom=bottom, width=0.9, label=label, align="center")
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylabel("items per day")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(y=0.08)
        step = max(1, -(-len(span) // MAX_TICKS))
        ax.set_xticks(x[::step], [d.isoformat() for d in span[::step]])
        ax.set_xlim(-1, len(span))
        ax.grid(axis="y", alpha=0.3)
        for n, day in enumerate(sorted(set(warned))[:MAX_LEGEND]):
            if span[0] <= day <= span[-1]:
                at = (day - span[0]).days
                label = "warning sent" if n == 0 else "_nolegend_"
                ax.axvline(at, color="#c00000", linestyle="--", linewidth=1.2, label=label)
        ax.legend(loc="upper left", fontsize="small", frameon=False)
        fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
