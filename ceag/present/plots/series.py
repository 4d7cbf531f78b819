"""One series per method, pruning criterion and pruning kind: its colour and the outline of its markers.

A method keeps its colour (``style.METHOD_COLORS``) under every criterion; the criterion shades it (magnitude
as it is, SNIP darker, SynFlow lighter) and outlines its markers, so points of one method stay one family
and its criteria can still be told apart. A method that chooses its own masks (FairGRAPE) keeps its colour.
Where a marker means nothing else (the Overview's lines), the criterion also picks it. Where the runs shown were
pruned in more than one way (``words.names_kinds``), the pruning kind shades the colour further (``pruning``).
"""

from __future__ import annotations

from ceag.present.plots.style import METHOD_COLORS, palette
from ceag.present.words import DEFAULT_CRITERION, own_masks

# the markers of a criterion's lines where the marker means nothing else (the Overview's chart)
CRITERION_SYMBOLS = {"magnitude": "circle", "snip": "square", "synflow": "diamond"}


# criterion -> (towards black (< 0) or white (> 0), the markers' outline colour, its width)
CRITERION_STYLE = {"magnitude": (0.0, "white", 1.0), "snip": (-0.45, "black", 1.5), "synflow": (0.5, "#333333", 1.5)}
# pruning kind -> towards black (< 0) or white (> 0), where more than one kind is shown
PRUNING_SHADES = {"unstructured": 0.0, "global": 0.3, "structured": -0.3, "channels": -0.55, "channels_global": 0.6}


def mix(color: str, amount: float) -> str:
    """``color`` (#rrggbb) moved ``|amount`` of the way to black (amount < 0) or white (amount > 0)."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    target = 0 if amount < 0 else 255
    mixed = [round(c + abs(amount) * (target - c)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def series_color(method: str, criterion: str | None = DEFAULT_CRITERION, index: int = 0,
                 pruning: str | None = None) -> str:
    """The colour of ``method``'s series under ``criterion`` (a method without a colour of its own takes the
    ``index``-th of the palette), shaded for its ``pruning`` kind where one is given (only where several are
    shown)."""
    base = METHOD_COLORS.get(method) or palette(index)
    if not own_masks(method) and criterion in CRITERION_STYLE:
        base = mix(base, CRITERION_STYLE[criterion][0])
    if pruning is not None and PRUNING_SHADES.get(pruning):
        base = mix(base, PRUNING_SHADES[pruning])
    return base


def series_outline(method: str, criterion: str | None = DEFAULT_CRITERION) -> dict:
    """The marker outline of ``method``'s series under ``criterion`` (plotly's ``marker.line``)."""
    if own_masks(method) or criterion not in CRITERION_STYLE:
        return dict(width=1, color="white")
    _, color, width = CRITERION_STYLE[criterion]
    return dict(width=width, color=color)


def series_symbol(method: str, criterion: str | None = DEFAULT_CRITERION) -> str:
    """The marker of ``method``'s line under ``criterion`` where the marker says nothing else (a method that
    chooses its own masks: a triangle)."""
    if own_masks(method):
        return "triangle-up"
    return CRITERION_SYMBOLS.get(criterion or DEFAULT_CRITERION, "circle")
