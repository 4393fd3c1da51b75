"""A small live plot of training and validation loss and the validation metric."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

EMPTY_TEXT = "No training yet.\nLoss and validation score appear here\nafter the first epoch."
LABEL_SIZE = 8
TICK_SIZE = 7


def metric_label(name: str) -> str:
    """A metric name as people write it: ap@0.5 -> AP@0.5, f1 -> F1."""
    head, sep, tail = (name or "score").partition("@")
    head = head.upper() if len(head) <= 3 else head
    return f"validation {head}{sep}{tail}"


class LossPlot(FigureCanvasQTAgg):
    """Loss curves (left axis) and the validation metric (right axis, 0..1) per epoch.

    Before the first epoch it shows a short text instead of an empty frame (``state`` is
    ``"empty"``, then ``"training"``). Epoch 0 is the starting model of a fine-tuning run.
    """

    def __init__(self) -> None:
        self.figure = Figure(figsize=(4, 2.6), layout="constrained")
        super().__init__(self.figure)
        self.setMinimumHeight(200)
        self.loss_axes = self.figure.add_subplot(111)
        self.metric_axes = self.loss_axes.twinx()
        self.message = self.figure.text(0.5, 0.5, EMPTY_TEXT, ha="center", va="center", fontsize=LABEL_SIZE + 1,
                                        color="0.4", linespacing=1.5)
        self.clear()

    @property
    def state(self) -> str:
        return "training" if self.epochs else "empty"

    def clear(self) -> None:
        self.epochs: list[int] = []
        self.train: list[float] = []
        self.val: list[float] = []
        self.metric: list[float] = []
        self.metric_name = "score"
        self._draw()

    def add_epoch(self, epoch: int, loss: float, val_loss: float | None, metric: float | None, metric_name: str) -> None:
        # epoch 0 is the starting model of a fine-tuning run; otherwise epochs are counted here,
        # so that runs that restart their count (cross-validation folds) still plot left to right
        self.epochs.append(0 if epoch == 0 and not self.epochs else (self.epochs[-1] + 1 if self.epochs else 1))
        self.train.append(loss)
        self.val.append(float("nan") if val_loss is None else val_loss)
        self.metric.append(float("nan") if metric is None else metric)
        self.metric_name = metric_name or "score"
        self._draw()

    def _draw(self) -> None:
        ax, ax2 = self.loss_axes, self.metric_axes
        ax.clear()
        ax2.clear()
        for legend in list(self.figure.legends):
            legend.remove()
        empty = self.state == "empty"
        self.message.set_visible(empty)
        ax.set_visible(not empty)
        ax2.set_visible(not empty)
        if not empty:
            from matplotlib.ticker import MaxNLocator

            ax.plot(self.epochs, self.train, "o-", color="C0", ms=3, label="training loss")
            ax.plot(self.epochs, self.val, "o-", color="C1", ms=3, label="validation loss")
            ax2.plot(self.epochs, self.metric, "s--", color="C2", ms=3, label=metric_label(self.metric_name))
            ax2.set_ylim(0, 1)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch", fontsize=LABEL_SIZE)
            ax.set_ylabel("loss", fontsize=LABEL_SIZE, color="C0")
            ax2.set_ylabel(metric_label(self.metric_name), fontsize=LABEL_SIZE, color="C2")
            ax2.yaxis.set_label_position("right")  # clear() puts a twin's label back on the left,
            ax2.yaxis.tick_right()  # on top of the loss label
            for axes in (ax, ax2):
                axes.tick_params(labelsize=TICK_SIZE)
            lines = ax.get_lines() + ax2.get_lines()
            # above the axes, never over the curves (a short run's loss sits at the top right)
            self.figure.legend(lines, [line.get_label() for line in lines], fontsize=TICK_SIZE,
                               loc="outside upper center", ncol=3, frameon=False, handlelength=1.5,
                               columnspacing=1.0)
        self.draw_idle()
