"""The report: one row per measured mode, the table, and the ratios the targets are stated in.

Pure: rows in, text and numbers out (tests/test_bench_units.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Row:
    mode: str
    group: str  # server | client | in-process | ceiling
    chars: int
    texts: int
    seconds: float
    latencies_ms: list = field(default_factory=list, repr=False)
    note: str = ""
    tokens: int = 0
    probe: float | None = None  # tokens/s of the ONNX model alone, measured just before this row

    @property
    def tokens_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def vs_alone(self) -> float | None:
        """Real tokens/s of this row over the model alone's tokens/s measured right before it: a ratio
        that holds when other work on the machine slows everything down."""
        return self.tokens_s / self.probe if self.probe and self.tokens else None

    @property
    def chars_s(self) -> float:
        return self.chars / self.seconds if self.seconds else 0.0

    @property
    def texts_s(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    def pct(self, q: float):
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) >= 2 else None

    def as_dict(self) -> dict:
        return {"mode": self.mode, "group": self.group, "chars": self.chars, "texts": self.texts,
                "seconds": round(self.seconds, 4), "chars_per_s": round(self.chars_s, 1),
                "texts_per_s": round(self.texts_s, 2), "tokens": self.tokens,
                "p50_ms": self.pct(50), "p95_ms": self.pct(95), "p99_ms": self.pct(99),
                "requests": len(self.latencies_ms), "note": self.note, "tokens_per_s": round(self.tokens_s, 1),
                "probe_tokens_per_s": self.probe, "vs_alone": self.vs_alone}


def fmt_ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def fmt_ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(rows: list[Row]) -> None:
    width = max(len(r.mode) for r in rows) + 2
    print(f"\n{'mode':<{width}}{'chars/s':>10}{'texts/s':>9}{'tokens/s':>10}{'vs alone':>10}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}  note")
    print("-" * (width + 66 + 24))
    group = None
    for r in rows:
        if group is not None and r.group != group:
            print()
        group = r.group
        tokens_s = f"{r.tokens_s:,.0f}" if r.tokens else "-"
        print(f"{r.mode:<{width}}{r.chars_s:>10,.0f}{r.texts_s:>9,.1f}{tokens_s:>10}{fmt_ratio(r.vs_alone):>10}"
              f"{fmt_ms(r.pct(50)):>9}{fmt_ms(r.pct(95)):>9}{fmt_ms(r.pct(99)):>9}  {r.note}")


def markdown_table(rows: list[Row]) -> str:
    lines = ["| mode | chars/s | texts/s | tokens/s | vs alone | p50 ms | p95 ms | p99 ms | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        tokens_s = f"{r.tokens_s:,.0f}" if r.tokens else "-"
        lines.append(f"| {r.mode} | {r.chars_s:,.0f} | {r.texts_s:,.1f} | {tokens_s} | {fmt_ratio(r.vs_alone)} "
                     f"| {fmt_ms(r.pct(50))} | {fmt_ms(r.pct(95))} | {fmt_ms(r.pct(99))} | {r.note} |")
    return "\n".join(lines)


def target_ratios(rows: list[Row]) -> dict[str, float]:
    """The numbers the targets are stated in (absent when a group of rows is missing):

    * ``vs_wtpsplit_raw``: the best server row's chars/s over wtpsplit's best in-process mode's;
    * ``vs_wtpsplit_normalised``: the same with every row taken relative to the model-alone probe run
      around it ("vs alone"), which cancels out a machine that got slower or faster in between;
    * ``vs_alone_raw``: the best server row over the ONNX model alone on the corpus' shape (the last
      ceiling row); ``vs_alone_normalised``: the best server row's "vs alone";
    * ``wtpsplit_vs_alone_raw``: wtpsplit's best over the model alone.
    """
    out: dict[str, float] = {}
    server = [r for r in rows if r.group == "server"]
    inproc = [r for r in rows if r.group == "in-process"]
    ceiling = [r for r in rows if r.group == "ceiling"]
    best = max(server, key=lambda r: r.chars_s) if server else None
    best_in = max(inproc, key=lambda r: r.chars_s) if inproc else None
    normal = [r for r in server if r.vs_alone]
    normal_in = [r for r in inproc if r.vs_alone]
    if best and best_in and best_in.chars_s:
        out["vs_wtpsplit_raw"] = best.chars_s / best_in.chars_s
        if normal and normal_in:
            out["vs_wtpsplit_normalised"] = (max(r.vs_alone for r in normal) / max(r.vs_alone for r in normal_in))
    if best and ceiling and ceiling[-1].chars_s:
        out["vs_alone_raw"] = best.chars_s / ceiling[-1].chars_s
        if normal:
            out["vs_alone_normalised"] = max(r.vs_alone for r in normal)
    if best_in and ceiling and ceiling[-1].chars_s:
        out["wtpsplit_vs_alone_raw"] = best_in.chars_s / ceiling[-1].chars_s
    return out


def compute_ratios(rows: list[Row]) -> dict[str, str]:
    """:func:`target_ratios` in words, naming the rows each ratio compares (the run's printed summary)."""
    numbers = target_ratios(rows)
    ratios = {}
    server = [r for r in rows if r.group == "server"]
    inproc = [r for r in rows if r.group == "in-process"]
    ceiling = [r for r in rows if r.group == "ceiling"]
    if server:
        best = max(server, key=lambda r: r.chars_s)
        ratios["best server (raw)"] = f"{best.mode}: {best.chars_s:,.0f} chars/s"
        if "vs_wtpsplit_raw" in numbers:
            best_in = max(inproc, key=lambda r: r.chars_s)
            ratios["server best / wtpsplit best in-process, raw chars/s"] = (
                f"{numbers['vs_wtpsplit_raw']:.2f} (vs {best_in.mode}: {best_in.chars_s:,.0f} chars/s)")
        if "vs_wtpsplit_normalised" in numbers:
            a = max((r for r in server if r.vs_alone), key=lambda r: r.vs_alone)
            b = max((r for r in inproc if r.vs_alone), key=lambda r: r.vs_alone)
            ratios["server best / wtpsplit best in-process, probe-normalised"] = (
                f"{numbers['vs_wtpsplit_normalised']:.2f} ({a.mode} at {a.vs_alone:.2f} of the model alone, "
                f"{b.mode} at {b.vs_alone:.2f})")
        if "vs_alone_raw" in numbers:
            own = ceiling[-1]  # the corpus-shaped batch
            ratios["server best / ONNX model alone (corpus shape), raw"] = (
                f"{numbers['vs_alone_raw']:.2f} (vs {own.mode}: {own.chars_s:,.0f} chars/s = {own.note})")
        if "vs_alone_normalised" in numbers:
            a = max((r for r in server if r.vs_alone), key=lambda r: r.vs_alone)
            ratios["server best / ONNX model alone, probe-normalised"] = f"{a.vs_alone:.2f} ({a.mode})"
    if "wtpsplit_vs_alone_raw" in numbers:
        ratios["wtpsplit best in-process / ONNX model alone (corpus shape), raw"] = (
            f"{numbers['wtpsplit_vs_alone_raw']:.2f}")
    return ratios
