"""The training-curve plot of ``rstg-fast syncmnist`` (written atomically; needs matplotlib)."""

from __future__ import annotations

from rstg_fast._atomic import atomic_path
from rstg_fast.data.syncmnist import NUM_CLASSES


def plot_curves(path: str, history: list[dict]) -> str | None:
    """Loss per epoch and accuracy against training wall time as a PNG; ``None`` when
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [h["epoch"] for h in history]
    minutes = [h["time_s"] / 60 for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["test_loss"] for h in history], "s-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(minutes, [100 * h["train_acc"] for h in history], "o-", label="train")
    ax2.plot(minutes, [100 * h["test_acc"] for h in history], "s-", label="test")
    if all("test_pair_given_digits" in h for h in history):
        pair = [100 * h["test_pair_given_digits"] for h in history]
        ax2.plot(minutes, pair, "^--", label="test, pair given digits")
    ax2.axhline(100 / NUM_CLASSES, color="grey", ls=":", label=f"chance (1/{NUM_CLASSES})")
    ax2.set_xlabel("training wall time (min)")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return path
