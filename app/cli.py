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
        move = f"{e.get('from', '-')} ({e.get('from_version', '-')}) -> {e.get('to', '-')} ({e.get('to_version', '-')})"
        took = f" {e['duration_ms']} ms" if "duration_ms" in e else ""
        print(f"{e['time']}  {e['action']:9} {e['outcome']:10} {move}{took}  {e.get('reason', '')}")


def run(args) -> int:
    from app.controller import Controller

    controller = Controller(load_config(args.config))
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
