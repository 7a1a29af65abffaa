"""`bluegreen`: the controller's command line.

Exit codes: 0 success; 1 the command could not do what was asked (one line on stderr
says why; ``--verbose`` adds the chain of causes); 2 usage errors; 130 interrupted.
Nothing heavy is imported before a command runs: ``--help`` costs the parser only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from app.control.config import COLORS
from app.errors import ControllerError, ModelLoadError


def _positive_int(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bluegreen", description="Blue-green model deployments behind nginx.")
    parser.add_argument("--config", help="TOML config file (default: bluegreen.toml when present)")
    parser.add_argument("--verbose", action="store_true", help="on failure, show the chain of causes too")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start both colors and nginx (idempotent); trains the shipped models if missing")
    sub.add_parser("down", help="stop nginx and both colors gracefully")
    status = sub.add_parser("status", help="active color, versions, readiness, health, pids (changes nothing)")
    status.add_argument("--json", action="store_true")
    switch = sub.add_parser("switch", help="move the front door to a color")
    switch.add_argument("color", choices=COLORS)
    switch.add_argument("--force", action="store_true", help="switch even if the color is not ready/healthy")
    rollback = sub.add_parser("rollback", help="back to the last promoted version (ends a running deploy)")
    rollback.add_argument("--force", action="store_true", help="switch even if the target is not ready/healthy")
    sub.add_parser("abort", help="stop the running deploy; traffic back on the stable version at once")
    promote = sub.add_parser("promote", help="a human's pass for a paused window (the canary moves on, a bake "
                                             "promotes) or a degraded rollout; recorded with the reason")
    promote.add_argument("--reason", help="why (kept in the history with the verdict it overrides)")
    sub.add_parser("reload", help="re-render, test and reload the nginx config (a reload may reset idle "
                                  "keep-alive client connections)")
    sub.add_parser("token", help="print the bearer token the local colors require on POST /feedback")
    sub.add_parser("reconcile", help="repair the record from what nginx serves (recorded in the history)")
    history = sub.add_parser("history", help="every switch, gate and deploy, with time, reason and outcome")
    history.add_argument("--json", action="store_true")
    history.add_argument("--limit", type=_positive_int, help="only the last N events")
    register = sub.add_parser("register",
                              help="add an iris classifier (a skops file, or joblib with --trust-pickle) as a version")
    register.add_argument("version", help="vMAJOR.MINOR.PATCH")
    register.add_argument("model_file")
    register.add_argument("--json", action="store_true", help="print the whole model card")
    register.add_argument("--trust-pickle", action="store_true",
                          help="load a joblib/pickle file: this runs any code the file contains, so only for a "
                               "file you made yourself or whose maker you trust (default: skops files only)")
    models = sub.add_parser("models", help="versions with their metrics and where each runs")
    models.add_argument("--json", action="store_true")
    deploy = sub.add_parser("deploy", help="load a version into the idle color, gate it, switch, bake")
    deploy.add_argument("version")
    deploy.add_argument("--dry-run", action="store_true", help="run the gates and print the plan; do not switch")
    deploy.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    deploy.add_argument("--force", action="store_true",
                        help="start even over a rollout whose deploy was interrupted (it is ended first), or "
                             "deploy the version the active color already serves")
    deploy.add_argument("--replace-idle", action="store_true",
                        help="let a dry run replace the version a rollback returns to")
    deploy.add_argument("--canary", metavar="WEIGHTS",
                        help="move this percentage of the front door step by step, each step judged, e.g. "
                             "10,50,100 (the last, 100, is the switch and the bake); a failed step goes back to 0%%")
    deploy.add_argument("--step-seconds", type=float, metavar="S",
                        help="how long each canary step (and the bake after it) is judged (default: bake.period)")
    deploy.add_argument("--sticky", action="store_true",
                        help="canary by client (X-Client-ID header or bluegreen_client cookie), not by request")
    shadow = sub.add_parser("shadow", help="mirror a sample of /predict to a version on the idle color, and compare")
    shadow_sub = shadow.add_subparsers(dest="shadow_command", required=True)
    shadow_start = shadow_sub.add_parser("start", help="gate VERSION onto the idle color, then mirror a sample to it")
    shadow_start.add_argument("version")
    shadow_start.add_argument("--sample", type=int, default=100, metavar="PCT",
                              help="percentage of the front door's /predict to mirror (default 100)")
    shadow_report = shadow_sub.add_parser("report", help="both versions on the same requests, paired by request id")
    shadow_report.add_argument("--json", action="store_true")
    shadow_sub.add_parser("stop", help="stop mirroring (the report stays readable)")
    watch = sub.add_parser("watch", help="poll the active color; roll back automatically when it fails")
    watch.add_argument("--duration", type=float, help="stop after this many seconds (default: until stopped)")
    sub.add_parser("dashboard", help="serve a read-only page of this stack's rollout on [dashboard] host:port "
                                     "(127.0.0.1:8090), refreshed by itself")
    drift = sub.add_parser("drift", help="compare a color's live inputs with its model's training data; exit 1 "
                                         "on drift")
    drift.add_argument("--color", choices=COLORS, help="the color whose prediction log to read (default: the "
                                                       "active one)")
    drift.add_argument("--since", metavar="DURATION", help="only rows of the last DURATION (30s, 15m, 2h, 1d; "
                                                           "default: all the color kept)")
    drift.add_argument("--json", action="store_true")
    drift.add_argument("--html", metavar="FILE", help="also write the report, with a plot per feature, to FILE")
    return parser


def print_status(status: dict) -> None:
    print(f"active: {status['active']}   stable: {status['stable'] or '-'}   "
          f"rollback to: {status['rollback_target'] or '-'}   phase: {status['phase']}")
    rollout = status["rollout"]
    if rollout:
        print(f"rollout: {rollout['version']} {rollout['source']} -> {rollout['target']}, {rollout['phase']} "
              f"(since {rollout['updated']}){' dry run' if rollout['dry_run'] else ''}")
        ended = rollout["phase"] in ("promoted", "rolled-back", "aborted", "degraded", "verified")
        if rollout["phase"] in ("paused", "degraded") and rollout.get("judgment"):
            print(f"undecided: {rollout['judgment'].get('reason')}")
            print("  `bluegreen promote --reason TEXT` takes it as passed; `bluegreen abort` (or `rollback`) ends it")
        if rollout.get("canary") and rollout.get("step") is not None and not ended:
            print(f"canary: step {rollout['step'] + 1} of {len(rollout['canary'])} "
                  f"({', '.join(map(str, rollout['canary']))}), {rollout['weight']}% on {rollout['target']}")
    if status.get("canary", {}).get("weight"):
        print(f"front door split: {status['canary']['weight']}% to {status['canary']['color']}")
    if status.get("shadow", {}).get("sample"):
        print(f"shadow: {status['shadow']['sample']}% of /predict mirrored to {status['shadow']['color']}")
    if status.get("pairing"):
        print(f"paired: {status['pairing']['percent']}% of the front door's /predict answered by both colors "
              f"for a judged window (pid {status['pairing']['pid']})")
    for warning in status["warnings"]:
        print(f"warning: {warning}")
    print(f"front door: {status['front_door']}   preview: {status['preview']}   "
          f"nginx pid: {status['nginx_pid'] or '-'}")
    for color, info in status["colors"].items():
        marker = "*" if color == status["active"] else " "
        print(f"{marker} {color:5} {info['version']:8} {info['state']:4} {info['reason']}")
        for server in info["servers"]:
            health = server["health"] or {}
            accuracy = (health.get("metrics") or {}).get("accuracy")
            live = health.get("live") or {}
            print(f"    {server['address']:21} pid {server['pid'] or '-':>7}  ready {str(server['ready']).lower():5}"
                  f"  accuracy {accuracy if accuracy is None else f'{accuracy:.3f}'}"
                  f"  live accuracy {live.get('accuracy')}  requests {live.get('requests', '-')}")


def describe_event(e: dict) -> str:
    if "from_version" in e:
        return f"{e.get('from')} ({e['from_version']}) -> {e.get('to')} ({e.get('to_version')})"
    if e["action"] == "gate":
        return f"{e.get('version')}: {e.get('gate')}"
    if e["action"] == "deploy":
        return f"{e.get('version')} to {e.get('to')}" + (" (dry run)" if e.get("dry_run") else "")
    if "to" in e:
        return f"{e.get('from', '-')} -> {e['to']}"
    return ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("time", "action", "outcome", "reason"))


def print_history(entries: list) -> None:
    if not entries:
        print("no history yet")
    for e in entries:
        took = f" {e['duration_ms']} ms" if "duration_ms" in e else ""
        reason = f"  {e['reason']}" if e.get("reason") else ""
        print(f"{e.get('time', '?')}  {e.get('action', '?'):9} {e.get('outcome', '?'):12} {describe_event(e)}{took}"
              f"{reason}")


def print_models(rows: list) -> None:
    for row in rows:
        m = row["metrics"]
        where = ", ".join(row["colors"]) or "-"
        flags = ("*" if row["active"] else " ") + ("s" if row["stable"] else " ")
        print(f"{flags} {row['version']:8} {row['algorithm'] or '?':24} "
              f"accuracy {m.get('accuracy', float('nan')):.4f}  f1 {m.get('f1_score', float('nan')):.4f}  "
              f"path {row['fast_path']:7} running on {where}")


def say_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# The commands that change something: a failure is recorded under the command's action.
CHANGES = {"up", "down", "switch", "rollback", "abort", "promote", "reload", "reconcile", "deploy", "shadow", "watch"}


def run(args) -> int:
    from app.control.config import load_config
    from app.control.context import build_context
    from app.control.controller import Controller
    from app.control.events import Action

    config = load_config(args.config)
    for warning in config.warnings:
        say_to_stderr(f"bluegreen: warning: {warning}")
    if args.command == "token":
        from app.control.tokens import current_token, token_warning

        token = current_token(config.run_dir)
        warning = token_warning(config.run_dir)
        if warning:
            say_to_stderr(f"bluegreen: warning: {warning}")
        print(token)
        return 0
    say = say_to_stderr if getattr(args, "json", False) else print
    controller = Controller(build_context(config, say))
    if args.command in CHANGES and getattr(args, "shadow_command", None) != "report":
        with controller.command(Action(args.command)):
            return change(controller, args, say)
    return look(controller, args, config)


def look(controller, args, config) -> int:
    """The commands that only read (and `register`, which runs offline training)."""
    views = controller.views
    if args.command == "status":
        status = views.status()
        print(json.dumps(status, indent=2)) if args.json else print_status(status)
    elif args.command == "history":
        entries = views.history(args.limit)
        print(json.dumps(entries, indent=2)) if args.json else print_history(entries)
    elif args.command == "models":
        rows = views.models()
        print(json.dumps(rows, indent=2)) if args.json else print_models(rows)
    elif args.command == "shadow":  # the report
        from app.control.shadow import ShadowControl, describe

        report = ShadowControl(controller).report()
        print(json.dumps(report, indent=2)) if args.json else print(describe(report))
    elif args.command == "dashboard":
        return dashboard(controller)
    elif args.command == "drift":
        return drift(controller, args)
    elif args.command == "register":
        from app.control.offline import run_training

        # The training process runs in the project's directory: name the file from here.
        print(run_training(config.models_dir, "register", args.version, os.path.abspath(args.model_file),
                           *(["--json"] if args.json else []), *(["--trust-pickle"] if args.trust_pickle else [])),
              end="")
    return 0


def dashboard(controller) -> int:
    import signal

    from app.control.dashboard import serve

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        serve(controller)
    except KeyboardInterrupt:
        print("dashboard stopped")
    return 0


def drift(controller, args) -> int:
    from app.control.drift import describe, drift, parse_duration

    config = controller.ctx.config
    color = args.color or controller.ctx.proxy.routed_color()
    report = drift(config, color, parse_duration(args.since) if args.since else None)
    if args.html:
        from app.artifacts.fsutil import atomic_write_bytes
        from app.control.drift_html import render_html

        try:
            atomic_write_bytes(Path(args.html), render_html(report).encode())
        except OSError as exc:
            raise ControllerError(f"{args.html}: cannot write the report ({exc.strerror})") from exc
    print(json.dumps(report.to_json(), indent=2)) if args.json else print(describe(report))
    if report.drifted:
        raise ControllerError(f"{report.verdict}: {report.reason}")
    return 0


def change(controller, args, say) -> int:
    """The commands that change something."""
    if args.command == "up":
        controller.lifecycle.up()
    elif args.command == "down":
        controller.lifecycle.down()
    elif args.command == "reload":
        from app.control.frontdoor import RELOAD_NOTE, RELOADED

        outcome = controller.lifecycle.reload()
        print(outcome)
        if outcome == RELOADED:
            say_to_stderr(f"bluegreen: {RELOAD_NOTE}")
    elif args.command == "reconcile":
        print(controller.reconciler.reconcile())
    elif args.command == "switch":
        controller.operations.switch(args.color, force=args.force)
    elif args.command == "rollback":
        controller.operations.rollback(force=args.force)
    elif args.command == "abort":
        controller.operations.abort()
    elif args.command == "promote":
        controller.operations.promote(args.reason)
    elif args.command == "deploy":
        deploy(controller, args, say)
    elif args.command == "shadow":
        from app.control.shadow import ShadowControl

        shadow = ShadowControl(controller)
        shadow.start(args.version, args.sample) if args.shadow_command == "start" else shadow.stop()
    elif args.command == "watch":
        from app.control.bake import watch

        return watch(controller, args.duration)
    return 0


def deploy(controller, args, say) -> None:
    from app.control.canary import parse_weights
    from app.control.deploy import Deployer

    if (args.step_seconds is not None or args.sticky) and not args.canary:
        raise ControllerError("--step-seconds and --sticky are canary options: add --canary 10,50,100")
    if args.step_seconds is not None and not args.step_seconds > 0:
        raise ControllerError(f"--step-seconds {args.step_seconds:g}: expected a positive number of seconds")
    weights = parse_weights(args.canary) if args.canary else None
    result = Deployer(controller).deploy(args.version, dry_run=args.dry_run, force=args.force,
                                         replace_idle=args.replace_idle, canary=weights,
                                         step_seconds=args.step_seconds, sticky=args.sticky)
    if result.exposure is not None:
        steps = "; ".join(f"{s.weight}%: {s.verdict.value}, {s.exposure} requests" for s in result.canary)
        say(f"canary exposure: {result.exposure} requests reached {result.version}" + (f" ({steps})" if steps
                                                                                      else ""))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    if not result.succeeded:
        raise ControllerError(result.message, recorded=result.recorded)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:  # the reader went away (`bluegreen history | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except (ControllerError, ModelLoadError, OSError) as exc:
        if args.verbose:
            traceback.print_exception(exc)
        message = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.filename}: {exc.strerror}"
        print(f"bluegreen: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bluegreen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
