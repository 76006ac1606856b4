"""The strategy comparison as one PNG: self-consumption and self-sufficiency bars, SoC spread and cycles."""

from __future__ import annotations

from pathlib import Path

from fleet.simulate import StrategyResult

_LABELS = {"none": "no batteries", "greedy": "each alone", "mean_soc": "mean SoC", "lp": "LP bound"}


def draw_strategies(results: dict[str, StrategyResult], path: Path, title: str) -> Path:
    """Write the chart to `path` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    labels = [_LABELS.get(name, name) for name in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    x = range(len(names))
    width = 0.38
    left.bar([i - width / 2 for i in x], [results[n].self_consumption * 100 for n in names], width,
             label="self-consumption")
    left.bar([i + width / 2 for i in x], [results[n].self_sufficiency * 100 for n in names], width,
             label="self-sufficiency")
    left.set_xticks(list(x), labels)
    left.set_ylabel("% of community PV / consumption")
    left.set_ylim(0, 100)
    left.legend(loc="lower right")
    left.set_title("Energy kept inside the community")
    right.bar(labels, [results[n].soc_spread * 100 for n in names], color="tab:gray")
    right.set_ylabel("mean SoC spread across the fleet (points)")
    twin = right.twinx()
    twin.plot(labels, [results[n].cycles for n in names], "o-", color="tab:red")
    twin.set_ylabel("equivalent full cycles per battery", color="tab:red")
    right.set_title("Fleet balance and battery wear")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
