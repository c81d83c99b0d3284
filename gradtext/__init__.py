"""gradtext: exploding and vanishing gradients, measured.

The package behind the gradtext book, usable on its own with any ``torch.nn.Module``:
training with divergence handling (:func:`fit`), synthetic tasks, models, plots, and (in their
own modules) monitoring, clipping, initialization and theory.

>>> import gradtext as gt
>>> gt.resolve_device("cpu")
device(type='cpu')
"""

from gradtext import models, plots, tasks, widgets
from gradtext.device import resolve_device, seed_everything
from gradtext.models import DeepMLP, ScalarRNN, SequenceModel
from gradtext.train import History, fit, global_grad_norm

__version__ = "0.1.0"

__all__ = [
    "DeepMLP",
    "History",
    "ScalarRNN",
    "SequenceModel",
    "fit",
    "global_grad_norm",
    "models",
    "plots",
    "resolve_device",
    "seed_everything",
    "tasks",
    "widgets",
]
