"""Explorers: one drawing function, two ways to play with it.

- :meth:`Explorer.interactive` gives ipywidgets sliders that redraw live (needs a kernel).
- :meth:`Explorer.static` precomputes a picture for every combination of the listed values
  and returns self-contained HTML with one slider per parameter, so the explorer keeps
  working in the HTML book, where no kernel runs.

>>> def draw(fig, depth, scale):
...     ax = fig.subplots()
...     ax.plot(range(depth), [scale ** k for k in range(depth)])
>>> explorer = Explorer(draw, {"depth": [2, 4], "scale": [0.5, 2.0]})
>>> explorer.combinations
4
>>> "<input" in explorer.static().data
True
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

DrawFn = Callable[..., None]
_ids = itertools.count()


class Explorer:
    """An interactive figure over a small grid of parameter values.

    Parameters
    ----------
    draw
        ``draw(fig, **values)`` draws one state into an empty matplotlib ``Figure``.
    params
        ``{name: [value, ...]}``: the values each slider offers (the first is the start).
    figsize
        Size of each picture in inches (matplotlib's ``figsize``).
    dpi
        Resolution of each picture, in dots per inch.
    max_frames
        Refuse grids larger than this (each combination is drawn once by ``static``).

    Examples
    --------
    >>> def draw(fig, gain):
    ...     fig.subplots().semilogy([gain**k for k in range(20)])
    >>> explorer = Explorer(draw, {"gain": [0.9, 1.0, 1.1]})
    >>> explorer.combinations  # pictures that static() precomputes
    3
    >>> page = explorer.static()  # HTML with one slider per parameter: no kernel needed
    >>> page.data.count('type="range"')
    1
    """

    def __init__(
        self,
        draw: DrawFn,
        params: Mapping[str, Sequence[Any]],
        *,
        figsize: tuple[float, float] = (6.4, 3.6),
        dpi: int = 72,
        max_frames: int = 64,
    ) -> None:
        if not callable(draw):
            raise TypeError(
                f"draw must be callable as draw(fig, **values), got {type(draw).__name__}"
            )
        if not isinstance(params, Mapping) or not params:
            raise ValueError("params must be a non-empty mapping {name: [values, ...]}")
        clean: dict[str, list[Any]] = {}
        for name, values in params.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"params: {name!r} is not a valid parameter name")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"params[{name!r}] must be a non-empty list of values")
            clean[name] = list(values)
        self.draw = draw
        self.params = clean
        self.figsize = figsize
        self.dpi = dpi
        if self.combinations > max_frames:
            raise ValueError(
                f"params give {self.combinations} combinations, more than max_frames={max_frames}; "
                "offer fewer values or raise max_frames"
            )

    @property
    def combinations(self) -> int:
        """How many pictures :meth:`static` draws."""
        return math.prod(len(values) for values in self.params.values())

    def figure(self, **values: Any) -> Figure:
        """Draw one state into a new figure (not shown) and return it."""
        fig = Figure(figsize=self.figsize, dpi=self.dpi)
        self.draw(fig, **values)
        return fig

    def png(self, **values: Any) -> bytes:
        """One state as PNG bytes."""
        buffer = io.BytesIO()
        self.figure(**values).savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()

    def static(self):
        """Self-contained HTML: precomputed pictures and one slider per parameter, no kernel.

        Returns an ``IPython.display.HTML`` object; its ``.data`` is the HTML text.
        """
        try:
            from IPython.display import HTML
        except ImportError as error:  # a plain `pip install gradtext` has no IPython
            raise ImportError(
                "Explorer.static needs IPython: pip install 'gradtext[widgets]'"
            ) from error

        names = list(self.params)
        frames = {}
        for indices in itertools.product(*(range(len(v)) for v in self.params.values())):
            values = {name: self.params[name][i] for name, i in zip(names, indices, strict=True)}
            key = ",".join(map(str, indices))
            frames[key] = base64.b64encode(self.png(**values)).decode("ascii")
        uid = f"gradtext-explorer-{next(_ids)}"
        labels = {name: [_label(v) for v in values] for name, values in self.params.items()}
        controls = "\n".join(
            f'<label style="display:block;margin:2px 0">'
            f'<span style="display:inline-block;min-width:8em">{html.escape(name)}</span>'
            f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="0" '
            f'data-param="{html.escape(name)}" style="vertical-align:middle;width:14em"> '
            f'<output style="font-family:monospace">{html.escape(labels[name][0])}</output></label>'
            for name, values in self.params.items()
        )
        first = ",".join("0" for _ in names)
        return HTML(
            f'<div id="{uid}" class="gradtext-explorer">\n'
            f'<img alt="explorer frame" style="max-width:100%" '
            f'src="data:image/png;base64,{frames[first]}">\n{controls}\n</div>\n'
            "<script>(function(){"
            f"var root=document.getElementById({json.dumps(uid)});"
            f"var frames={json.dumps(frames)};var labels={_script_json(labels)};"
            "var inputs=root.querySelectorAll('input[type=range]');"
            "function update(){var key=[];inputs.forEach(function(el){key.push(el.value);"
            "el.nextElementSibling.textContent=labels[el.dataset.param][el.value];});"
            "root.querySelector('img').src='data:image/png;base64,'+frames[key.join(',')];}"
            "inputs.forEach(function(el){el.addEventListener('input',update);});"
            "})();</script>"
        )

    def interactive(self):
        """ipywidgets controls that redraw the figure live (in Jupyter, with a kernel).

        Integer values get an integer slider over their range, positive values spanning more
        than two decades a log slider, other numbers a float slider, anything else buttons.
        """
        try:
            import ipywidgets as widgets
            from IPython.display import display
        except ImportError as error:
            raise ImportError(
                "Explorer.interactive needs ipywidgets: pip install 'gradtext[widgets]'"
            ) from error

        controls = {name: _control(name, values) for name, values in self.params.items()}
        output = widgets.Output()

        def redraw(**values: Any) -> None:
            with output:
                output.clear_output(wait=True)
                fig = plt.figure(figsize=self.figsize, dpi=self.dpi)
                self.draw(fig, **values)
                display(fig)
                plt.close(fig)

        widgets.interactive_output(redraw, controls)
        return widgets.VBox([*controls.values(), output])


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (a ``</script>`` in a label would end it)."""
    return json.dumps(value).replace("</", "<\\/")


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _control(name: str, values: list[Any]):
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numbers and len(values) > 1:
        low, high = min(values), max(values)
        if all(isinstance(v, int) for v in values):
            return widgets.IntSlider(value=values[0], min=low, max=high, description=name,
                                     style=style, continuous_update=False)
        if low > 0 and high / low > 100:
            return widgets.FloatLogSlider(value=values[0], min=math.log10(low),
                                          max=math.log10(high), step=0.05, description=name,
                                          style=style, continuous_update=False)
        return widgets.FloatSlider(value=values[0], min=low, max=high, step=(high - low) / 100,
                                   description=name, style=style, continuous_update=False)
    # (label, value) pairs: ipywidgets would read a bare 2-tuple value as such a pair
    options = [(_label(v), v) for v in values]
    return widgets.ToggleButtons(options=options, value=values[0], description=name, style=style)
