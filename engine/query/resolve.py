"""A numeric statement's syntax -> a typed query: nodes, worlds and values resolved against the DAG.

The parser leaves names as names; here they become the typed query of ``engine.query.query``:
nodes checked against the DAG, values read by each node's Domain, units by the World.

Comparisons keep numbers as written: ``y < 0.3`` holds for the grid values below 0.3; only ``=``
and ``!=`` against a grid node snap the number to the grid (the snapped value is reported).
PN, PS and PNS are answered as their ``@`` expansion (``Causation.expand``).
"""

from __future__ import annotations

from dataclasses import replace

from engine.lang import nodes as ast
from engine.model.domains import DomainError
from engine.query import statistics
from engine.query.query import Arithmetic, Comparison, Constant, Expr, Leaf, Population, Quantity, World, map_quantities
from engine.query.units import Units

class Resolver:
    """Resolves the numeric statements of one program against its DAG, model and units."""

    def __init__(self, units: Units, mechanisms):
        self.units, self.program, self.dag = units, units.program, units.dag
        self.mechanisms = mechanisms  # the nodes the model has a mechanism for
        self.notes: dict[str, str] = {}

    def statement(self, statement: ast.Numeric) -> Expr:
        """The typed tree of one numeric statement; ``self.notes`` collects the snapped values."""
        self.notes = {}
        return self._expr(statement.expr)

    def _expr(self, node) -> Expr:
        if isinstance(node, ast.Causation):
            node = node.expand()
        if isinstance(node, ast.BinOp):
            return Arithmetic(node.op, self._expr(node.left), self._expr(node.right), node)
        if isinstance(node, ast.Number):
            return Constant(node.value.number(), str(node.value))
        population = self._population(node.given, node)
        if isinstance(node, ast.Probability):
            body = tuple(self._event(e) for e in node.events)
            return self._localised(Leaf("probability", body, population, node))
        if isinstance(node, ast.Expectation):
            return self._localised(Leaf("expectation", self._arithmetic(node.expr), population, node))
        quantities = tuple(self._quantity(q) for q in node.quantities)
        for q, written in zip(quantities, node.quantities):
            if len(quantities) > 1 and not self._discrete(q):
                raise self.program.error(written, f"{q.text} is real-valued: a joint P(a, b) needs discrete nodes; ask P({q.text}) alone, or E[...]")
        return self._localised(Leaf("distribution", quantities, population, node))

    def _localised(self, leaf: Leaf) -> Leaf:
        """For units, ``| do(...)`` is the world the query is read in: move it onto every quantity."""
        population = leaf.population
        if not (population.units and population.do):
            return leaf
        world = population.do
        text = "@" + self.world_text(world)

        def move(q: Quantity) -> Quantity:
            if q.statistic:
                return replace(q, world=world, text=f"{q.statistic}({q.node}{text})")
            return replace(q, world=world, text=q.node + text)

        moved = map_quantities(leaf.body, move)
        evidence = tuple(map_quantities(e, move) for e in population.evidence)
        return replace(leaf, body=moved, population=replace(population, evidence=evidence, do=()))

    # ---- what follows | ----

    def _population(self, given: ast.Given | None, where) -> Population:
        if given is None:
            return Population(where=where)
        evidence = tuple(self._event(e) for e in given.evidence)
        do = self._world(given.do) if given.do is not None else ()
        units = tuple(self.units.unit_set(u) for u in given.units)
        return Population(evidence, do, units, ", ".join(e.text for e in evidence), given)

    def _world(self, intervention: ast.Intervention) -> World:
        values = self.units.values(intervention.assignments, "intervention")
        return tuple(sorted((name, code) for name, (code, _) in values.items()))

    def world_text(self, world: World) -> str:
        """``do(shape=square, light=100deg)``: the values as answers show them (degrees marked)."""
        shown = []
        for n, v in world:
            value = _shown(self.units.show(n, v))
            shown.append(f"{n}={value}{'deg' if self.dag.nodes[n].domain.unit == 'deg' else ''}")
        return "do(" + ", ".join(shown) + ")"

    # ---- quantities and comparisons ----

    def _quantity(self, node, *, image_ok: bool = False) -> Quantity:
        if isinstance(node, ast.Statistic):
            return self._statistic(node)
        name = node.node
        if name not in self.dag.nodes:
            raise self.program.error(node, f"'{name}' is not a node of the DAG '{self.dag.name}'; nodes: {', '.join(self.dag.order)}")
        world = self._world(node.world) if node.world is not None else ()
        text = name + ("@" + self.world_text(world) if world else "")
        if self.dag.nodes[name].domain.is_image and not image_ok:
            raise self.program.error(node, f"'{name}' is an image: ask about a statistic of it, e.g. area({name}); statistics: {', '.join(statistics.names())}")
        return Quantity(name, world, None, text)

    def _statistic(self, node: ast.Statistic) -> Quantity:
        if statistics.statistic(node.name) is None:
            raise self.program.error(node, f"unknown statistic '{node.name}'; registered statistics: {', '.join(statistics.names())}")
        term = self._quantity(node.term, image_ok=True)
        if not self.dag.nodes[term.node].domain.is_image:
            images = ", ".join(self.dag.images) or "none in this DAG"
            raise self.program.error(node, f"{node.name}(...) reads an image; '{term.node}' is a label node (image nodes: {images})")
        if term.node not in self.mechanisms:
            raise self.program.error(node, f"{node.name}({term.node}) needs the image mechanism, and this query runs on the DAG alone: "
                                           f"answer it with a trained model, cq query FILE --model RUN")
        return replace(term, statistic=node.name, text=f"{node.name}({term.text})")

    def _event(self, event: ast.Event) -> Comparison:
        left = self._quantity(event.left)
        right, op = event.right, event.op
        if isinstance(right, ast.Value) and right.is_name and self._names_value(left, right) is None and right.value in self.dag.nodes:
            right = ast.Term(right.value, None, event.line, event.column)
        if not isinstance(right, ast.Value):
            other = self._quantity(right)
            by_index = self._compatible(left, other, op, event)
            return Comparison(left, op, other, by_index, f"{left.text} {op} {other.text}")
        return self._against_value(left, op, right, event)

    def _against_value(self, left: Quantity, op: str, value: ast.Value, event) -> Comparison:
        domain = None if left.statistic else self.dag.nodes[left.node].domain
        text = f"{left.text} {op} {value}"
        if domain is not None and domain.kind == "names":
            if op not in ("=", "!="):
                raise self.program.error(event, f"'{op}' compares numbers; '{left.node}' takes names ({domain.describe()}): use = or !=")
            code = self._names_value(left, value)
            if code is None:
                nodes = ", ".join(n for n in self.dag.order if n != left.node)
                raise self.program.error(event, f"'{value}' is not a value of '{left.node}' ({domain.describe()}) nor a node ({nodes})")
            return Comparison(left, op, Constant(code, str(value)), True, text)
        if value.is_name:
            what = domain.describe() if domain is not None else "real numbers"
            raise self.program.error(event, f"{left.text} takes a number ({what}), not '{value}' (nor is '{value}' a node)")
        try:
            if domain is None:
                if value.unit is not None:
                    raise DomainError(f"the unit '{value.unit}' is for angles; {left.text} is a number of pixels")
                return Comparison(left, op, Constant(float(value.value), str(value)), False, text)
            if op in ("=", "!=") and domain.kind == "grid":
                code = domain.encode(value.value, value.unit)
                shown = domain.decode(code)
                if abs(shown - domain.number(value.value, value.unit)) > 1e-9:
                    self.notes[text] = f"{left.text} {op} {_shown(shown)}"
                return Comparison(left, op, Constant(code, _shown(shown)), True, f"{left.text} {op} {_shown(shown)}")
            number = domain.encode(value.value, value.unit) if op in ("=", "!=") else domain.number(value.value, value.unit)
        except DomainError as e:
            raise self.program.error(event, f"{text}: {e}") from None
        return Comparison(left, op, Constant(number, str(value)), False, text)

    def _names_value(self, left: Quantity, value: ast.Value):
        domain = self.dag.nodes[left.node].domain
        if left.statistic or domain.kind != "names" or not value.is_name or value.value not in domain.values:
            return None
        return domain.values.index(value.value)

    def _compatible(self, left: Quantity, right: Quantity, op: str, event) -> bool:
        """Whether two quantities compare by class index (names); raise if they do not compare at all."""
        a = None if left.statistic else self.dag.nodes[left.node].domain
        b = None if right.statistic else self.dag.nodes[right.node].domain
        names = [d is not None and d.kind == "names" for d in (a, b)]
        if not any(names):
            return False
        if not all(names) or a.values != b.values:
            raise self.program.error(event, f"{left.text} and {right.text} do not compare: they take different values")
        if op not in ("=", "!="):
            raise self.program.error(event, f"'{op}' compares numbers; {left.text} takes names ({a.describe()}): use = or !=")
        return True

    def _arithmetic(self, node):
        """The expression inside E[...]: numeric quantities, numbers, + - * /."""
        if isinstance(node, ast.BinOp):
            return Arithmetic(node.op, self._arithmetic(node.left), self._arithmetic(node.right), node)
        if isinstance(node, ast.Number):
            return Constant(node.value.number(), str(node.value))
        q = self._quantity(node)
        if not q.statistic and not self.dag.nodes[q.node].domain.is_numeric:
            raise self.program.error(node, f"E[...] takes numbers; '{q.node}' takes names ({self.dag.nodes[q.node].domain.describe()}): "
                                           f"ask P({q.node}) for its distribution, or P({q.node}=...) for one value")
        return q

    def _discrete(self, q: Quantity) -> bool:
        return not q.statistic and self.dag.nodes[q.node].domain.is_discrete


def _shown(value) -> str:
    return value if isinstance(value, str) else f"{value:g}"
