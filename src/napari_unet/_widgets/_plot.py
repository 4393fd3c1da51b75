"""A small live plot of training and validation loss and the validation metric."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class LossPlot(FigureCanvasQTAgg):
    def __init__(self) -> None:
        self.figure = Figure(figsize=(4, 2.6), tight_layout=True)
        super().__init__(self.figure)
        self.setMinimumHeight(200)
        self.loss_axes = self.figure.add_subplot(111)
        self.metric_axes = self.loss_axes.twinx()
        self.clear()

    def clear(self) -> None:
        self.epochs: list[int] = []
        self.train: list[float] = []
        self.val: list[float] = []
        self.metric: list[float] = []
        self.metric_name = "metric"
        self._draw()

    def add_epoch(self, epoch: int, loss: float, val_loss: float | None, metric: float | None, metric_name: str) -> None:
        self.epochs.append(len(self.epochs) + 1)
        self.train.append(loss)
        self.val.append(float("nan") if val_loss is None else val_loss)
        self.metric.append(float("nan") if metric is None else metric)
        self.metric_name = metric_name or "metric"
        self._draw()

    def _draw(self) -> None:
        ax, ax2 = self.loss_axes, self.metric_axes
        ax.clear()
        ax2.clear()
        ax.plot(self.epochs, self.train, "o-", color="C0", ms=3, label="training loss")
        ax.plot(self.epochs, self.val, "o-", color="C1", ms=3, label="validation loss")
        ax2.plot(self.epochs, self.metric, "s--", color="C2", ms=3, label=f"validation {self.metric_name}")
        ax2.set_ylim(0, 1)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax2.set_ylabel(self.metric_name)
        lines = ax.get_lines() + ax2.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper right")
        self.draw_idle()
