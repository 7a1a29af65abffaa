"""`bluegreen`: the controller's command line.

Exit codes: 0 success; 1 the command could not do what was asked (one line on stderr
says why); 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.errors import ControllerError, ModelLoadError
from app.stack_config import COLORS, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bluegreen", description="Blue-green model deployments behind nginx.")
    parser.add_argument("--config", help="TOML config file (default: bluegreen.toml when present)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start both colors and nginx (idempotent)")
    sub.add_parser("down", help="stop nginx and both colors gracefully")
    status = sub.add_parser("status", help="active color, versions, readiness, health, pids")
    status.add_argument("--json", action="store_true")
    switch = sub.add_parser("switch", help="move the front door to a color")
    switch.add_argument("color", choices=COLORS)
    switch.add_argument("--force", action="store_true", help="switch even if the color is not ready/healthy")
    rollback = sub.add_parser("rollback", help="back to the previously active color")
    rollback.add_argument("--force", action="store_true")
    sub.add_parser("reload", help="re-render, test and reload the nginx config")
    history = sub.add_parser("history", help="every switch, with time, versions, reason and outcome")
    history.add_argument("--json", action="store_true")
    register = sub.add_parser("register", help="add a joblib-saved iris classifier as a new version")
    register.add_argument("version", help="vMAJOR.MINOR.PATCH")
    register.add_argument("model_file")
    models = sub.add_parser("models", help="versions with their metrics and where each runs")
    models.add_argument("--json", action="store_true")
    deploy = sub.add_parser("deploy", help="load a version into the idle color, gate it, switch, bake")
    deploy.add_argument("version")
    deploy.add_argument("--dry-run", action="store_true", help="run the gates and print the plan; do not switch")
    deploy.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    watch = sub.add_parser("watch", help="poll the active color; roll back automatically when it fails")
    watch.add_argument("--duration", type=float, help="stop after this many seconds (default: until stopped)")
    return parser


def print_status(status: dict) -> None:
    print(f"active: {status['active']}   previous: {status['previous'] or '-'}   phase: {status['phase']}")
    print(f"front door: {status['front_door']}   preview: {status['preview']}   "
          f"nginx pid: {status['nginx_pid'] or '-'}")
    for color, info in status["colors"].items():
        marker = "*" if color == status["active"] else " "
        print(f"{marker} {color:5} {info['version']:8} {info['state']:4} {info['reason']}")
        for server in info["servers"]:
            health = server["health"] or {}
            metrics = health.get("metrics", {})
            live = health.get("live", {})
            accuracy = metrics.get("accuracy")
            print(f"    {server['address']:21} pid {server['pid'] or '-':>7}  ready {str(server['ready']).lower():5}"
                  f"  accuracy {accuracy if accuracy is None else f'{accuracy:.3f}'}"
                  f"  live accuracy {live.get('accuracy')}  requests {live.get('requests', '-')}")


def print_history(entries: list) -> None:
    if not entries:
        print("no history yet")
    for e in entries:
        if "from_version" in e:
            what = f"{e['from']} ({e['from_version']}) -> {e['to']} ({e['to_version']})"
        elif e["action"] == "gate":
            what = f"{e['version']}: {e['gate']}"
        elif e["action"] == "deploy":
            what = f"{e['version']} to {e['to']}"
        elif "to" in e:
            what = f"{e.get('from', '-')} -> {e['to']}"
        else:
            what = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("time", "action", "outcome", "reason"))
        took = f" {e['duration_ms']} ms" if "duration_ms" in e else ""
        reason = f"  {e['reason']}" if e.get("reason") else ""
        print(f"{e['time']}  {e['action']:9} {e['outcome']:12} {what}{took}{reason}")


def print_models(rows: list) -> None:
    for row in rows:
        m = row["metrics"]
        where = ", ".join(row["colors"]) or "-"
        print(f"{'*' if row['active'] else ' '} {row['version']:8} {row['algorithm'] or '?':24} "
              f"accuracy {m.get('accuracy', float('nan')):.4f}  f1 {m.get('f1_score', float('nan')):.4f}  "
              f"path {row['fast_path']:7} running on {where}")


def say_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args) -> int:
    from app.controller import Controller
    from app.deploy import Deployer

    config = load_config(args.config)
    say = say_to_stderr if getattr(args, "json", False) else print
    controller = Controller(config, say=say)
    if args.command == "up":
        controller.up()
    elif args.command == "down":
        controller.down()
    elif args.command == "status":
        status = controller.status()
        print(json.dumps(status, indent=2)) if args.json else print_status(status)
    elif args.command == "switch":
        controller.switch(args.color, force=args.force)
    elif args.command == "rollback":
        controller.rollback(force=args.force)
    elif args.command == "reload":
        print(controller.reload())
    elif args.command == "history":
        entries = controller.history()
        print(json.dumps(entries, indent=2)) if args.json else print_history(entries)
    elif args.command == "register":
        from app.training import register_version

        card = register_version(args.version, args.model_file, config.models_dir)
        print(json.dumps(card, indent=2))
    elif args.command == "models":
        rows = Deployer(controller, say=say).models()
        print(json.dumps(rows, indent=2)) if args.json else print_models(rows)
    elif args.command == "deploy":
        deployer = Deployer(controller, say=say)
        try:
            deployer.deploy(args.version, dry_run=args.dry_run)
        finally:
            if args.json:
                print(json.dumps(getattr(deployer, "last_result", {}), indent=2))
    elif args.command == "watch":
        return Deployer(controller, say=say).watch(args.duration)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ControllerError, ModelLoadError) as exc:
        print(f"bluegreen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bluegreen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
