"""Shared test settings: a non-interactive matplotlib backend and one thread for determinism."""

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
