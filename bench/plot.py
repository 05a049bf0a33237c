"""The capacity curve as a picture: latency percentiles and throughput against offered load.

One panel per request size: p50/p95/p99 response time (log scale, left axis) and ok answers per
second with the offered load as a dashed diagonal (right axis), refusals as bars; the SLOs as dotted
lines. Needs matplotlib (``pip install matplotlib``); imported only when a curve is drawn.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402


def draw_capacity(curves: Sequence[dict], slos_ms: Sequence[float], title: str, path: Path) -> Path:
    fig, axes = plt.subplots(2, len(curves), figsize=(6.5 * len(curves), 7.0), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [3, 2]})
    for column, curve in enumerate(curves):
        top, bottom = axes[0][column], axes[1][column]
        points = sorted(curve["points"], key=lambda p: p["offered_rps"])
        offered = [p["offered_rps"] for p in points]
        for key, style, color in (("p50_ms", "o-", "tab:blue"), ("p95_ms", "s-", "tab:orange"),
                                  ("p99_ms", "^-", "tab:red")):
            xs = [x for x, p in zip(offered, points) if p[key] is not None]
            top.plot(xs, [p[key] for p in points if p[key] is not None], style, color=color, label=key[:3],
                     markersize=4)
        top.set_yscale("log")
        top.set_ylabel("response time from due time (ms)")
        for slo in slos_ms:
            top.axhline(slo, color="grey", linestyle=":", linewidth=0.8)
            top.annotate(f"{slo:g} ms", (1.0, slo), xycoords=("axes fraction", "data"), xytext=(2, 0),
                         textcoords="offset points", va="center", fontsize=7, color="grey")
        k = curve["texts_per_request"]
        top.set_title(f"{k} text{'s' if k != 1 else ''} per request (~{curve['chars_per_request']:,.0f} chars)",
                      fontsize=10)
        top.legend(loc="upper left", fontsize=8)
        top.grid(True, which="major", alpha=0.3)
        bottom.plot(offered, offered, "--", color="grey", linewidth=1, label="offered")
        bottom.plot(offered, [p["throughput_rps"] for p in points], "D-", color="black", markersize=4,
                    label="ok answers/s")
        width = (offered[-1] - offered[0]) / len(offered) * 0.5 if len(offered) > 1 else 0.5
        bottom.bar(offered, [p["refused"] / p["duration_s"] for p in points], width=width, color="tab:red",
                   alpha=0.4, label="refused/s")
        bottom.set_xlabel("offered load (requests/s)")
        bottom.set_ylabel("requests/s")
        bottom.set_ylim(bottom=0)
        bottom.legend(loc="upper left", fontsize=8)
        bottom.grid(True, alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(title, 110 if len(curves) > 1 else 80)), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
