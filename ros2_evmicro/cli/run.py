"""``evmicro run <graph> [name:=value ...]``: run a graph's nodes in one process; ``evmicro graph``: show one;
``evmicro params``: show or check a node's parameters."""

from __future__ import annotations

import argparse

from ros2_evmicro.graphs import GRAPHS, get_graph, parse_graph_args


def _run(args: argparse.Namespace) -> int:
    from ros2_evmicro.ros.runner import run_graph

    graph = get_graph(args.graph)
    decls = graph.nodes(parse_graph_args(args.args))
    print(f"evmicro run {graph.name}: {len(decls)} nodes: {', '.join(d.fqn for d in decls)}")
    why = run_graph(decls, duration_s=args.duration or None)
    print(f"evmicro run {graph.name}: stopped ({why})")
    return 0


def _show(args: argparse.Namespace) -> int:
    graph = get_graph(args.graph)
    print(f"{graph.name}: {graph.description}\nlaunch file: launch/{graph.launch_file}\narguments:")
    for a in graph.args:
        ch = f" {{{', '.join(a.choices)}}}" if a.choices else ""
        print(f"  {a.name}:={a.default!r}{ch}  {a.description}")
    print("nodes:")
    for d in graph.nodes(parse_graph_args(args.args)):
        print(f"  {d.fqn}  ({d.executable})")
        for k, v in d.parameters.items():
            print(f"      {k}: {v!r}")
        for a, b in d.remappings:
            print(f"      remap {a} -> {b}")
    return 0


def _params(args: argparse.Namespace) -> int:
    from ros2_evmicro.graphs import config_dir
    from ros2_evmicro.specs import all_specs, get_spec

    if not args.node:
        print("\n".join(all_specs()))
        return 0
    spec = get_spec(args.node)
    if args.check:
        vals = spec.from_yaml(args.check, args.name or spec.node)
        print(f"{args.check}: {spec.node} parameters OK")
        for k, v in vals.items():
            print(f"  {k}: {v!r}")
        return 0
    print(f"## {spec.node}\n\n{spec.description}\n\n{spec.markdown()}\n")
    print(f"(values: {config_dir() / (spec.node + '.yaml')})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="run a graph (demo, record, replay) in one process")
    p.add_argument("graph", choices=sorted(GRAPHS))
    p.add_argument("args", nargs="*", help="graph arguments, name:=value (see `evmicro graph NAME`)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds")
    p.set_defaults(func=_run)
    g = sub.add_parser("graph", help="show a graph's arguments and nodes")
    g.add_argument("graph", choices=sorted(GRAPHS))
    g.add_argument("args", nargs="*", help="graph arguments, name:=value")
    g.set_defaults(func=_show)
    q = sub.add_parser("params", help="list nodes, show a node's parameters, or check a params file")
    q.add_argument("node", nargs="?")
    q.add_argument("--check", metavar="YAML", help="check a ROS params file against the declaration")
    q.add_argument("--name", help="node name in the file (default: the node's default name)")
    q.set_defaults(func=_params)
