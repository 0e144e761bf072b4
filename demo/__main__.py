"""`python -m demo` (`make demo`): fluxfleet against the lab's simulated fleet, start to finish.

It starts Azurite and the lab (50 panels over 2 subscriptions, rings canary/early/broad, two panels
offline) and the app in the local Functions host, then plays a scripted scenario through the app's
public interfaces only — HTTP calls as a release pipeline makes them, the operator's CLI, images
pushed to the registry — and shows what happens live. Everything is stopped and cleaned up at the end.
Exit code 0 when every scene ended as expected, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from demo import scenes
from demo.client import AppClient, LabControl
from demo.view import console
from lab.kit import HostProcess, LabProcess

PANELS = 50
SUBSCRIPTIONS = 2
OFFLINE = 2
# Lab seconds per real second: a 5-minute Flux sync interval passes in 7.5 s, so the whole story
# (three rollout rings, an image automation cycle) fits in a couple of minutes. ARM's throttling
# and the app's pacing scale with it, so every ratio stays true.
TIME_SCALE = 40.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the lab's state dir afterwards")
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE)
    args = parser.parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="fluxfleet-demo-"))
    started = time.monotonic()
    ok = False
    console.rule("[bold]fluxfleet demo")
    console.print(
        f"Starting the lab ({PANELS} panels, {SUBSCRIPTIONS} subscriptions, {OFFLINE} offline) "
        f"and the app in the local Functions host … (state in {state_dir})"
    )
    try:
        with (
            LabProcess(
                state_dir,
                clusters=PANELS,
                subscriptions=SUBSCRIPTIONS,
                offline=OFFLINE,
                time_scale=args.time_scale,
            ) as lab,
            HostProcess(lab) as host,
        ):
            app = AppClient(host.url, host.function_key)
            control = LabControl(lab.endpoint("control"), lab.ca_bundle)
            story = scenes.Story(
                app=app,
                lab=control,
                lab_dir=state_dir,
                host_url=host.url,
                master_key=host.master_key,
                time_scale=args.time_scale,
            )
            ok = story.play()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted")
    finally:
        if not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)
    console.rule(f"[bold]{'done' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
