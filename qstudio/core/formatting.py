"""How figures read: one formatter per kind of number, shared by the report, the CLI and the window.

A latency, an SQNR or a size should read the same in every place qstudio shows it.
"""

from __future__ import annotations

import math

DASH = "—"


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def fmt_ms(v: float | None) -> str:
    """Milliseconds with precision that suits the size: 123, 12.3, 1.23, 0.123."""
    if not _finite(v):
        return DASH
    assert v is not None
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_pct(v: float | None) -> str:
    """A fraction as a percentage with one decimal: 0.912 -> '91.2%'."""
    return DASH if not _finite(v) else f"{100 * v:.1f}%"  # type: ignore[operator]


def fmt_db(v: float | None) -> str:
    """SQNR in dB with one decimal; +inf (no error at all) is '∞'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.1f}"


def fmt_ratio(v: float | None) -> str:
    """A speed or size ratio: two decimals below 2 (1.35x), one above (4.8x)."""
    if not _finite(v):
        return DASH
    assert v is not None
    return f"{v:.2f}x" if v < 1.995 else f"{v:.1f}x"


def fmt_size(mb: float | None) -> str:
    """A size given in MB (1e6 bytes); below 1 MB in kB so small models do not read 0.0."""
    if not _finite(mb):
        return DASH
    assert mb is not None
    if mb >= 100:
        return f"{mb:.0f} MB"
    if mb >= 1:
        return f"{mb:.2f} MB"
    return f"{mb * 1000:.1f} kB"


def fmt_seconds(s: float | None) -> str:
    if not _finite(s):
        return DASH
    assert s is not None
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    return f"{minutes} min {sec:02d} s"


def fmt_sci(v: float | None) -> str:
    """Small differences (fusion, export checks) in scientific notation."""
    if v is None:
        return DASH
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.2e}"


def fmt_num(v: float | None, digits: int = 4) -> str:
    return DASH if not _finite(v) else f"{v:.{digits}f}"


def headline(text: str, limit: int = 110) -> str:
    """A warning's first clause, for a line of its own: up to its first ``" ("`` or sentence end, at most ``limit``.

    ``"UNRELIABLE SPEEDS: 3 of 16 trials had unstable timings (their calls ...): ..."`` reads
    ``"UNRELIABLE SPEEDS: 3 of 16 trials had unstable timings"``; the whole text stays where the details are shown.
    """
    ends = [i for i in (text.find(" ("), text.find(". ")) if i > 0]
    cut = (text[: min(ends)] if ends else text).rstrip(".")
    return cut if len(cut) <= limit else cut[: limit - 1].rstrip(" ,;:") + "…"
