import base64
import re

import pytest

from gradtext.widgets import Explorer


def _draw(calls):
    def draw(fig, depth, scale):
        calls.append((depth, scale))
        ax = fig.subplots()
        ax.semilogy(range(depth), [scale**k for k in range(depth)])

    return draw


def test_static_draws_every_combination_once_and_needs_no_kernel():
    calls = []
    explorer = Explorer(_draw(calls), {"depth": [2, 4, 8], "scale": [0.5, 2.0]})
    html = explorer.static().data
    assert sorted(calls) == sorted((d, s) for d in [2, 4, 8] for s in [0.5, 2.0])
    assert html.count('type="range"') == 2
    frames = re.search(r"var frames=(\{.*?\});", html).group(1)
    keys = re.findall(r'"(\d,\d)"', frames)
    assert sorted(keys) == sorted(f"{i},{j}" for i in range(3) for j in range(2))
    first = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in html  # self-contained: nothing to fetch


def test_each_static_explorer_gets_its_own_id():
    a = Explorer(_draw([]), {"depth": [2], "scale": [1.0]}).static().data
    b = Explorer(_draw([]), {"depth": [2], "scale": [1.0]}).static().data
    id_a = re.search(r'id="([^"]+)"', a).group(1)
    id_b = re.search(r'id="([^"]+)"', b).group(1)
    assert id_a != id_b


def test_interactive_builds_one_control_per_parameter():
    import ipywidgets as widgets

    calls = []
    explorer = Explorer(_draw(calls), {"depth": [2, 16], "scale": [0.01, 10.0]})
    box = explorer.interactive()
    depth, scale, output = box.children
    assert isinstance(depth, widgets.IntSlider) and (depth.min, depth.max) == (2, 16)
    assert isinstance(scale, widgets.FloatLogSlider)
    assert isinstance(output, widgets.Output)
    depth.value = 5
    assert calls[-1][0] == 5


def test_non_numeric_values_get_buttons():
    import ipywidgets as widgets

    def draw(fig, activation):
        fig.subplots().set_title(activation)

    box = Explorer(draw, {"activation": ["tanh", "relu"]}).interactive()
    assert isinstance(box.children[0], widgets.ToggleButtons)


@pytest.mark.parametrize(
    "args, error, message",
    [
        (("not callable", {"a": [1]}), TypeError, "draw must be callable"),
        ((lambda fig: None, {}), ValueError, "params must be a non-empty mapping"),
        ((lambda fig, a: None, {"a": []}), ValueError, r"params\['a'\] must be a non-empty"),
        ((lambda fig, a: None, {"a": "xyz"}), ValueError, r"params\['a'\] must be a non-empty"),
        ((lambda fig, a: None, {"a b": [1]}), ValueError, "not a valid parameter name"),
        ((lambda fig, a, b: None, {"a": list(range(10)), "b": list(range(10))}), ValueError,
         "more than max_frames"),
    ],
)
def test_bad_input(args, error, message):
    with pytest.raises(error, match=message):
        Explorer(*args)


def test_tuple_values_reach_draw_unchanged_in_both_explorers():
    import ipywidgets as widgets

    calls = []

    def draw(fig, shape):
        calls.append(shape)
        fig.subplots().set_title(str(shape))

    explorer = Explorer(draw, {"shape": [(2, 3), (4, 5)]})
    box = explorer.interactive()
    buttons = box.children[0]
    assert isinstance(buttons, widgets.ToggleButtons)
    assert calls[-1] == (2, 3)
    buttons.value = (4, 5)
    assert calls[-1] == (4, 5)
    assert "(4, 5)" in explorer.static().data


def test_static_labels_cannot_end_the_script_early():
    html = Explorer(lambda fig, name: None, {"name": ["a</script><b>x", "b"]}).static().data
    script = html.split("<script>", 1)[1]
    assert script.count("</script>") == 1 and script.endswith("</script>")
