"""Why gradients explode or vanish, computed: predictions from theory and the exact measurements
to hold them against.

Four ideas, in the order the book uses them:

1. **Signal propagation in deep feed-forward nets** (Glorot & Bengio 2010; He et al. 2015;
   Poole et al. 2016; Schoenholz et al. 2017). With weights ``W_ij ~ N(0, weight_variance /
   fan_in)``, the mean square of the pre-activations follows the recurrence
   ``q_l = weight_variance * E[phi(h)^2] + bias_variance`` (``h ~ N(0, q_{l-1})``), and the
   backward signal is multiplied at every layer by
   ``chi_l = weight_variance * (fan_out / fan_in) * E[phi'(h)^2]``.
   :func:`propagate_variance` computes both; :func:`measure_propagation` measures them on a
   real network (:func:`random_mlp` draws one); :func:`critical_weight_variance` finds the
   scale where ``chi = 1``.
2. **Jacobian spectra**: :func:`jacobian_singular_values` (exact, ``torch.func``),
   :func:`extreme_singular_values` (power iteration with JVP/VJP products, for large nets) and
   :func:`spectrum_spread` (``var(lambda) / mean(lambda)^2`` of the squared singular values).
3. **Recurrent nets** (Bengio et al. 1994; Pascanu, Mikolov & Bengio 2013): the same weight
   matrix enters every step, so ``dh_T/dh_{T-k}`` is a product of ``k`` per-step Jacobians.
   :func:`rnn_jacobian_norms` measures its norm for every ``k`` (:func:`cell_jacobian_norms`
   for any cell); :func:`state_decay` gives the per-step factor of any RNN, LSTM or GRU, and
   :func:`pascanu_regime` says whether the largest singular value of the recurrent matrix
   guarantees vanishing or permits exploding.
4. **The cliff** of Pascanu et al.'s one-unit RNN ``x_t = w * sigmoid(x_{t-1}) + b``:
   :func:`scalar_rnn_loss_surface`, :func:`scalar_rnn_descent` and :func:`steepest_point`.

And one cause that needs no product at all: a learning rate above ``2 / lambda_max`` makes
gradient descent diverge on a plain quadratic (:func:`quadratic_descent`).

One module per idea: ``activations`` (Gaussian moments, slope bounds), ``propagation`` (1),
``spectrum`` (2), ``recurrent`` (3), ``cliff`` (4) and ``learning_rate``; every public name is
available here, as ``gradtext.theory.<name>``.

>>> import torch
>>> round(critical_weight_variance("relu"), 6)   # He et al.'s factor 2
2.0
>>> prediction = propagate_variance([64] * 11, "relu", weight_variance=2.0)
>>> [round(float(q), 6) for q in prediction.pre_activation[:3]]
[2.0, 2.0, 2.0]
>>> rnn = torch.nn.RNN(2, 8, batch_first=True)
>>> rnn_jacobian_norms(rnn, torch.randn(20, 2)).shape   # k = 0, 1, ..., 20
(21,)
"""

from __future__ import annotations

from gradtext.theory.activations import derivative_bound, gaussian_moments
from gradtext.theory.cliff import (
    DescentPath,
    LossSurface,
    ScalarRNNProblem,
    SteepestPoint,
    scalar_rnn_descent,
    scalar_rnn_loss_surface,
    steepest_point,
)
from gradtext.theory.learning_rate import QuadraticDescent, quadratic_descent
from gradtext.theory.propagation import (
    Propagation,
    critical_weight_variance,
    measure_propagation,
    propagate_variance,
    random_mlp,
)
from gradtext.theory.recurrent import (
    PascanuRegime,
    StateDecay,
    cell_jacobian_norms,
    fit_decay_rate,
    pascanu_regime,
    rnn_jacobian_norms,
    state_decay,
)
from gradtext.theory.spectrum import (
    extreme_singular_values,
    input_output_jacobian,
    jacobian_singular_values,
    spectrum_spread,
)

__all__ = [
    "DescentPath",
    "LossSurface",
    "PascanuRegime",
    "Propagation",
    "QuadraticDescent",
    "ScalarRNNProblem",
    "StateDecay",
    "SteepestPoint",
    "cell_jacobian_norms",
    "critical_weight_variance",
    "derivative_bound",
    "extreme_singular_values",
    "fit_decay_rate",
    "gaussian_moments",
    "input_output_jacobian",
    "jacobian_singular_values",
    "measure_propagation",
    "pascanu_regime",
    "propagate_variance",
    "quadratic_descent",
    "random_mlp",
    "rnn_jacobian_norms",
    "scalar_rnn_descent",
    "scalar_rnn_loss_surface",
    "spectrum_spread",
    "state_decay",
    "steepest_point",
]
