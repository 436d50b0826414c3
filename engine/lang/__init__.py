"""The .cq query language: syntax only; names (shape, square, img) are resolved by the executor.

A program is a list of statements, each ended by a new line or ``;``. ``#`` starts a comment
that runs to the end of the line; blank lines are fine. A statement fits on one line::

    img = dsprites[245760]                    # bind a unit: a dSprites image with its labels
    pic = png("queries/data/heart.png", shape=heart, scale=1.0, orientation=0.0, x=0.5, y=0.5)
    raw = png("queries/data/heart.png")       # a user image without labels
    given img, do(shape=square)               # counterfactual, 1 sample
    given img, do(shape=square, x=0.25, y=0.75) samples 8
    given dsprites[1234], do(shape=heart)     # a unit written inline instead of a variable
    do(shape=heart) samples 16                # interventional; without 'samples', 1
    given shape=heart, scale=1.0 samples 4    # observational: conditioned on label evidence

Values are names (``square``) or numbers: ``3``, ``-0.5``, ``1e-3``, and angles with a unit,
``90deg``, ``1.5rad``, ``0.5pi``, ``-pi`` or a bare ``pi``. A number without a unit is kept as
written (for an angle it means radians); :meth:`~engine.lang.nodes.Value.number` converts.
Paths are in double or single quotes. ``do(...)`` and ``png(...)`` accept a trailing comma.
``given``, ``do``, ``samples``, ``dsprites`` and ``png`` are keywords.

>>> from engine.lang import parse
>>> parse("do(orientation=90deg) samples 2").statements[0].interventions[0].value
Value(value=90.0, unit='deg')
"""

from engine.lang.nodes import Program
from engine.lang.parser import parse, parse_file

__all__ = ["Program", "parse", "parse_file"]
