"""PNG plots of a comparison: per request, the latency and the prompt tokens each side processed."""

from __future__ import annotations

from pathlib import Path

from .sides import SideResult


def plot_session(results: list[SideResult], path: Path) -> None:
    """Two panels sharing the request axis: seconds per request, tokens reprocessed per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for r in results:
        xs = range(1, len(r.requests) + 1)
        top.plot(xs, [q.seconds for q in r.requests], marker=".", label=r.side)
        bottom.plot(xs, [max(q.tokens, 1) for q in r.requests], marker=".", label=r.side)
        chats = [i + 1 for i, q in enumerate(r.requests) if q.kind == "chat"]
        for x in chats:
            top.axvline(x, color="grey", linewidth=0.5, linestyle=":")
    first = results[0]
    top.set_title(f"{first.workload} on {first.model}: each request (dotted: chat questions)")
    top.set_ylabel("request latency (s)")
    top.set_yscale("log")
    bottom.set_ylabel("prompt tokens processed")
    bottom.set_yscale("log")
    bottom.set_xlabel("request")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
