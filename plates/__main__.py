"""``python -m plates``: draw registered models and answer independence queries.

    python -m plates coin --out coin.svg
    python -m plates coin_mixture --query "flips[1] _|_ flips[2] | theta, pi"
    python -m plates --all --out diagrams/           # one diagram per registered model (.svg)

Bad input ends with exit status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .build import graph
from .errors import GraphvizMissingWarning, PlateError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plates", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="a registered model")
    parser.add_argument("--out", help="output file (.svg .png .pdf .dot .tex), or a folder with --all")
    parser.add_argument("--query", help='an independence query, e.g. "x _|_ theta | z"')
    parser.add_argument("--all", action="store_true", help="draw every registered model into the --out folder")
    parser.add_argument("--format", default="svg", help="format for --all (default svg)")
    args = parser.parse_args(argv)
    try:
        import ppl_models

        if args.all:
            out = Path(args.out or "diagrams")
            for name in ppl_models.names():
                _draw(graph(name), out / f"{name}.{args.format.lstrip('.')}")
            return 0
        if not args.name:
            raise PlateError("name", "give a registered model or --all")
        g = graph(args.name)
        if args.query:
            from .query import parse_query

            xs, ys, given = parse_query(args.query)
            answer = g.d_separated(xs, ys, given)
            print(f"{args.query.strip()}: {'d-separated' if answer else 'not d-separated'}")
        if args.out:
            _draw(g, Path(args.out))
        if not args.out and not args.query:
            print(g.factorization())
        return 0
    except (PlateError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2


def _draw(g, path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GraphvizMissingWarning)
        written = g.render(path)
    for w in caught:
        if issubclass(w.category, GraphvizMissingWarning):
            print(f"note: {w.message}")
    print(f"wrote {written}")


if __name__ == "__main__":
    sys.exit(main())
