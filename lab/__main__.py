"""`python -m lab serve ...` and `python -m lab host ...`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description="fluxfleet's local Azure lab")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the emulated Azure services and write DIR/lab.json")
    serve.add_argument("--state-dir", type=Path, required=True)
    serve.add_argument("--clusters", type=int, default=50)
    serve.add_argument("--subscriptions", type=int, default=1)
    serve.add_argument("--offline", type=int, default=0, help="panels that start offline")
    serve.add_argument(
        "--unconfigured",
        type=int,
        default=0,
        help="more Arc-connected panels with no Flux extension and no Flux configuration (new panels)",
    )
    serve.add_argument(
        "--no-runner", action="store_true", help="do not seed the image-automation runner ipc-automation-hub"
    )
    serve.add_argument("--time-scale", type=float, default=1.0, help="lab seconds per real second")
    serve.add_argument("--no-azurite", action="store_true", help="do not start Azurite")
    serve.add_argument(
        "--resource-graph-lag",
        type=float,
        default=1.0,  # lab.resourcegraph.service.DEFAULT_LAG_S
        metavar="SECONDS",
        help="lab seconds Resource Graph lags ARM (default 1; 0 for none)",
    )
    host = sub.add_parser("host", help="run function_app.py as the Functions host does, against the lab")
    host.add_argument("--lab", type=Path, required=True, help="the lab's state dir (with lab.json)")
    host.add_argument("--port", type=int, default=7071)
    host.add_argument("--instance", default="host-1", help="a name for this host instance in logs")
    host.add_argument(
        "--app-dir",
        type=Path,
        default=None,
        help="the folder with function_app.py and host.json (default: the current directory)",
    )
    host.add_argument("--app-module", default="function_app", help="the module that defines the FunctionApp")
    host.add_argument(
        "--subscriptions",
        type=Path,
        default=None,
        help="Event Grid subscriptions to create (default: APP_DIR/infra/event-subscriptions.json)",
    )
    settings = sub.add_parser("settings", help="print a local.settings.json for `func start` against the lab")
    settings.add_argument("--lab", type=Path, required=True, help="the lab's state dir (with lab.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    if args.command == "serve":
        if args.clusters < 1 or args.subscriptions < 1 or args.subscriptions > args.clusters:
            parser.error(
                "--clusters and --subscriptions must be positive, with at most one subscription a panel"
            )
        if args.time_scale <= 0:
            parser.error("--time-scale must be positive")
        if args.resource_graph_lag < 0:
            parser.error("--resource-graph-lag must not be negative")
        if args.unconfigured < 0 or args.offline < 0:
            parser.error("--unconfigured and --offline must not be negative")
        from lab.server import Lab
        from lab.server import serve as run_serve

        lab = Lab(
            state_dir=args.state_dir.resolve(),
            clusters=args.clusters,
            subscriptions=args.subscriptions,
            time_scale=args.time_scale,
            offline=args.offline,
            unconfigured=args.unconfigured,
            runner=not args.no_runner,
            azurite=not args.no_azurite,
            resource_graph_lag=args.resource_graph_lag,
        )
        asyncio.run(run_serve(lab))
        return 0
    if args.command == "settings":
        import json

        from lab.host import render_local_settings

        lab_json = args.lab / "lab.json"
        if not lab_json.exists():
            parser.error(f"{lab_json} not found: start the lab first")
        print(json.dumps(render_local_settings(json.loads(lab_json.read_text())), indent=2))
        return 0
    from lab.host import run_host

    return run_host(
        lab_dir=args.lab.resolve(),
        port=args.port,
        instance=args.instance,
        app_dir=args.app_dir,
        app_module=args.app_module,
        subscriptions=args.subscriptions,
    )


if __name__ == "__main__":
    sys.exit(main())
