"""The loss-curve plot of a training run: each logged term against the step, raw and smoothed."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

SMOOTHING = 50  # steps in the running mean drawn over the raw values


def plot_losses(csv_path, png_path):
    """losses.csv (columns step, lr, the terms..., total, seconds) -> a PNG with one panel per term
    and the total: raw values faint, the running mean over SMOOTHING steps solid."""
    log = pd.read_csv(csv_path)
    terms = [c for c in log.columns if c not in ("step", "lr", "seconds")]
    fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2), squeeze=False)
    for ax, term in zip(axes[0], terms):
        ax.plot(log["step"], log[term], color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(log["step"], log[term].rolling(SMOOTHING, min_periods=1).mean(), color="tab:blue")
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
