"""``lococourse models``: every registered model, where it would load from, and whether it is available now."""
from __future__ import annotations

import json

from lococourse.models.registry import all_models, availability


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    p.add_argument("--probe-network", action="store_true",
                   help="also try to reach the hub (a few seconds at most) for models not in the local cache")


def model_rows(probe_network: bool = False) -> list[dict]:
    rows = []
    for name, spec in all_models().items():
        ok, where = availability(spec, probe_network=probe_network)
        rows.append({"name": name, "source": spec.source, "kind": spec.kind, "family": spec.family,
                     "resolution": spec.resolution, "edit_t": spec.edit_t, "strength": list(spec.strength),
                     "available": ok, "where": where})
    return rows


def run(args) -> int:
    rows = model_rows(args.probe_network)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'kind':<6} {'family':<7} {'px':>4}  {'available':<9}  where")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['kind']:<6} {r['family']:<7} {r['resolution']:>4}  "
              f"{'yes' if r['available'] else 'no':<9}  {r['where'] if r['available'] else r['where']}")
    return 0
