"""napari front end: thin dock widgets over the headless core."""

from ._predict import PredictWidget
from ._train import TrainWidget

__all__ = ["PredictWidget", "TrainWidget"]
