"""gradtext: exploding and vanishing gradients, measured.

The package behind the gradtext book, usable on its own with any ``torch.nn.Module``:
training with divergence handling (:func:`fit`), synthetic tasks, models, plots, and (in their
own modules) monitoring, clipping, initialization and theory.

>>> import gradtext as gt
>>> gt.resolve_device("cpu")
device(type='cpu')
"""

from gradtext import cells, clip, init, models, optim, plots, tasks, theory, widgets
from gradtext.clip import (
    AdaptiveGradientClipping,
    AutoClip,
    ClipResult,
    ZScoreClip,
    clip_by_norm,
    clip_by_value,
    clip_per_parameter,
)
from gradtext.device import resolve_device, seed_everything
from gradtext.models import DeepMLP, ResidualMLP, ScalarRNN, SequenceModel
from gradtext.monitor import Diagnosis, GradientMonitor, Thresholds
from gradtext.train import History, fit, global_grad_norm

__version__ = "0.1.0"

__all__ = [
    "AdaptiveGradientClipping",
    "AutoClip",
    "ClipResult",
    "DeepMLP",
    "Diagnosis",
    "GradientMonitor",
    "History",
    "ResidualMLP",
    "ScalarRNN",
    "SequenceModel",
    "Thresholds",
    "ZScoreClip",
    "cells",
    "clip",
    "clip_by_norm",
    "clip_by_value",
    "clip_per_parameter",
    "fit",
    "global_grad_norm",
    "init",
    "models",
    "optim",
    "plots",
    "resolve_device",
    "seed_everything",
    "tasks",
    "theory",
    "widgets",
]
