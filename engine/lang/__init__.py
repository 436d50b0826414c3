"""The .cq query language: syntax only; names (shape, square, img, a world) are resolved by the executor.

A program is a list of statements, each ended by a new line or ``;``. ``#`` starts a comment
that runs to the end of the line; blank lines are fine. A statement fits on one line. Image
statements draw pictures::

    img = data[3]                             # bind a unit: datum 3 of the DAG's world (data[i] or NAME[i])
    hearts = data[shape=heart, scale>=0.5]    # a selection: the data whose labels match
    first = data[0:10000]                     # a slice, as in Python: data[5:], data[:100], data[:100, x<0.5]
    pic = png("queries/data/heart.png", shape=heart, scale=1.0, orientation=0.0, x=0.5, y=0.5)
    raw = png("queries/data/heart.png")       # a user image without labels
    given img, do(shape=square)               # counterfactual, 1 sample
    given img, do(shape=square, x=0.25, y=0.75) samples 8
    given data[1234], do(shape=heart)         # a unit (or selection) written inline instead of a variable
    do(shape=heart) samples 16                # interventional; without 'samples', 1
    given shape=heart, scale=1.0 samples 4    # observational: conditioned on label evidence

Numeric statements ask for numbers, estimated from ``draws N`` Monte Carlo draws::

    P(y)                                      # the distribution of y (alone: not in arithmetic)
    P(y > 0.5, scale=1.0 | shape=heart)       # events (= != < <= > >=) joined by ',' or 'and'
    P(y > 0.5 | do(scale=1.0), shape=heart) draws 20000
    E[y | do(scale=1.0)] - E[y | do(scale=0.5)]          # + - * / and parentheses over queries and numbers
    P(y@do(shape=square) > 0.5 | u)           # y in the world do(shape=square), for the bound unit u
    P(y@do(shape=square) = y | u)             # a bare name on the right may be a node in the factual world
    E[area(img@do(scale=1.0)) - area(img) | u]           # statistics of images: name(term)
    PNS(y > 0.5, do(shape=heart), do(shape=square))      # PN, PS, PNS: outcome, do(cause), do(alternative)

After ``|``: evidence (items with an operator), at most one ``do(...)``, and units (a bare name
is a bound unit; ``data[3]`` or ``data[shape=heart]`` inline). A statement writes its
interventions either after ``|`` or as ``@do(...)`` terms, not both. PN, PS and PNS expand to
``@`` forms: see :class:`~engine.lang.nodes.Causation`.

Values are names (``square``) or numbers: ``3``, ``-0.5``, ``1e-3``, and angles with a unit,
``90deg``, ``1.5rad``, ``0.5pi``, ``-pi`` or a bare ``pi``. A number is kept as written, unit
and all; the node's domain converts it. Digits are ASCII (0-9). Counts and indices
(``samples``, ``draws``, ``data[...]``, slice bounds) are whole numbers in digits, with
``samples`` at most ``MAX_SAMPLES`` and ``draws`` at most ``MAX_DRAWS`` (``engine.lang.parser``).
Paths are in double or single quotes. ``do(...)`` and ``png(...)`` accept a trailing comma.
``given``, ``do``, ``samples``, ``draws``, ``png``, ``and``, ``P``, ``E``, ``PN``, ``PS`` and
``PNS`` are keywords where the grammar expects them (``do(mood=given)`` is fine). A UTF-8
byte-order mark at the start of the text is ignored.

>>> from engine.lang import parse
>>> parse("do(orientation=90deg) samples 2").statements[0].interventions[0].value
Value(value=90.0, unit='deg')
"""

from engine.lang.nodes import Program
from engine.lang.parser import MAX_DRAWS, MAX_SAMPLES, parse, parse_file

__all__ = ["MAX_DRAWS", "MAX_SAMPLES", "Program", "parse", "parse_file"]
