"""Draw a dashboard's panel layout (from its JSON) as a PNG: where each panel sits, its title, type and limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_COLORS = {"timeseries": "#dbe9f6", "stat": "#e3f4e1", "table": "#f6ecd9"}


def render_layout(dashboard: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig, ax = plt.subplots(figsize=(12, 12 * rows / 24 * 0.55 + 0.8))
    ax.set_xlim(0, 24)
    ax.set_ylim(rows, -1.5)
    ax.axis("off")
    variables = ", ".join(v["name"] for v in dashboard.get("templating", {}).get("list", []))
    ax.text(0, -0.8, f"{dashboard['title']}   (variables: {variables or 'none'})", fontsize=13, weight="bold")
    for panel in panels:
        pos = panel["gridPos"]
        ax.add_patch(
            Rectangle(
                (pos["x"] + 0.1, pos["y"] + 0.1),
                pos["w"] - 0.2,
                pos["h"] - 0.2,
                facecolor=_COLORS.get(panel["type"], "#eeeeee"),
                edgecolor="#555555",
            )
        )
        ax.text(pos["x"] + 0.4, pos["y"] + 0.9, panel["title"], fontsize=10, weight="bold", va="top")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        ax.text(
            pos["x"] + 0.4, pos["y"] + 1.9, f"{panel['type']} · {unit}", fontsize=8, va="top", color="#333333"
        )
        steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
        limits = [f"{s['value']:g}" for s in steps if s.get("value") is not None]
        if limits:
            ax.text(
                pos["x"] + 0.4,
                pos["y"] + 2.8,
                "limits: " + " / ".join(limits),
                fontsize=8,
                va="top",
                color="#a33",
            )
    fig.savefig(target, dpi=80, bbox_inches="tight")
    plt.close(fig)
