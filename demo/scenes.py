"""The demo's scenario: what a release pipeline, an operator and a developer do, one scene each.

Every scene acts only through the app's public interfaces (its HTTP API, the operator CLI, a push to
the registry) and reads the lab's ground truth only to *show* what really happened on the panels.
A scene returns False when the outcome is not what it should be; the demo then exits non-zero.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table

from demo.client import AppClient, LabControl
from demo.view import console, fleet_table, group, progress_table, ring_of, scene
from lab.kit import REPO_ROOT

# How long a scene may wait for the fleet (real seconds) before it reports failure.
SCENE_TIMEOUT_S = 90.0
LIVE_REFRESH_S = 0.5


@dataclass
class Story:
    app: AppClient
    lab: LabControl
    lab_dir: Path
    host_url: str
    master_key: str
    time_scale: float
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    rings: dict[str, str] = field(default_factory=dict)  # panel id (lower) -> ring

    def play(self) -> bool:
        for title, run in (
            ("1. Fleet status", self.fleet_status),
            ("2. A release pipeline freezes the canary ring, deploys, and resumes it", self.release_window),
            ("3. The operator mints a new PAT; the fleet converges ring by ring", self.rotate_pat),
            ("4. An image is pushed: will it roll out, when — then did it?", self.image_push),
            (
                "5. Factories break panels: on call, the fleet's health says why, in Flux's words",
                self.fleet_health,
            ),
        ):
            console.rule(f"[bold]{title}")
            started = time.monotonic()
            try:
                ok, summary = run()
            except Exception as exc:  # a scene that crashes is a failed scene, shown as such
                ok, summary = False, f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - started
            console.print(f"{'[green]✔' if ok else '[red]✘'} {summary} [dim]({elapsed:.0f} s)")
            self.results.append((title, ok, summary))
        self.print_summary()
        return all(ok for _, ok, _ in self.results)

    # --- scenes -----------------------------------------------------------------------------------------
    def fleet_status(self) -> tuple[bool, str]:
        inventory = self.app.get("fleet")
        self.rings = {p["id"].lower(): ring_of(p) for p in inventory["clusters"]}
        console.print(fleet_table(inventory))
        offline = [p["name"] for p in inventory["clusters"] if p["connectivity"] != "Connected"]
        console.print(f"Offline panels: {', '.join(offline) or 'none'}")
        return inventory["total"] > 0, f"{inventory['total']} panels, {len(offline)} offline"

    def release_window(self) -> tuple[bool, str]:
        target = {"tags": {"ring": "canary"}}
        console.print(
            scene(
                "release pipeline",
                'POST /api/fleet/suspend {"target": {"tags": {"ring": '
                '"canary"}}, "reason": "release 2026.11: opcua-gateway config"}',
            )
        )
        suspended = self.run_operation(
            "fleet/suspend",
            {"reason": "release 2026.11: opcua-gateway config", "target": target},
            "suspend canary",
        )
        canary = {pid for pid, ring in self.rings.items() if ring == "canary"}
        truth = self.lab.state()
        stopped = {c["id"].lower() for c in truth["clusters"] if c["suspended"]}
        if stopped != canary:
            expected = len(canary)
            return False, f"ground truth: {len(stopped)} panels suspended, expected the {expected} canaries"
        console.print(
            scene(
                "deploy",
                "The pipeline commits a configuration change to main while the "
                "canaries "
                "are frozen; the rest of the fleet applies it, the canaries do not.",
            )
        )
        commit = self.commit_change()
        self.wait_for(
            lambda s: self.applied_share(s, commit, exclude=canary) >= 0.99,
            "early and broad panels apply the new commit",
        )
        truth = self.lab.state()
        canary_applied = sum(
            1 for c in truth["clusters"] if c["id"].lower() in canary and c["applied_revision"] == commit
        )
        console.print(
            f"Commit {commit[:10]}: applied by {self.applied_count(truth, commit)} panels, "
            f"by {canary_applied} of {len(canary)} canaries (frozen)."
        )
        resumed = self.run_operation(
            "fleet/resume", {"reason": "release 2026.11 verified", "target": target}, "resume canary"
        )
        self.wait_for(
            lambda s: all(
                c["applied_revision"] == commit
                for c in s["clusters"]
                if c["id"].lower() in canary and c["online"]
            ),
            "canaries apply the commit after resume",
        )
        ok = suspended["status"] == "succeeded" and resumed["status"] == "succeeded" and canary_applied == 0
        return ok, (
            f"suspend {suspended['status']}, resume {resumed['status']}; canaries held back the "
            f"commit while frozen and applied it after resume"
        )

    def rotate_pat(self) -> tuple[bool, str]:
        before = self.app.get("credentials")
        old = before["current"]
        console.print(
            scene(
                "operator",
                "python -m shared.cli pat mint --org ipc-org --days 90 --lab DIR\n"
                "(the PAT goes from the PAT API straight into Key Vault; it is never printed)",
            )
        )
        mint = [
            sys.executable,
            "-m",
            "shared.cli",
            "pat",
            "mint",
            "--org",
            "ipc-org",
            "--days",
            "90",
            "--lab",
            str(self.lab_dir),
        ]
        minted = subprocess.run(mint, capture_output=True, text=True, check=False)  # noqa: S603 - our CLI
        console.print(minted.stdout.strip() or minted.stderr.strip())
        if minted.returncode != 0:
            return False, f"pat mint failed: {minted.stderr.strip()[:200]}"
        new_version = self.wait_for_value(
            lambda: self.version_rolling_out(old["version"]), "Key Vault event starts the rollout"
        )
        report = self.follow_rollout(new_version)
        console.print(f"Bringing the {report['stragglersTotal']} offline panel(s) back online …")
        for straggler in report["stragglers"]:
            self.lab.call("POST", f"/_lab/clusters/{straggler['name']}/connectivity", {"online": True})
        report = self.wait_for_value(self.revocation_safe, "offline panels converge after reconnect")
        revocable = ", ".join(
            v.get("authorizationId") or v["version"] for v in report["revocation"]["revocable"]
        )
        console.print(
            f"[bold]GET /api/credentials:[/] {report['revocation']['reason']}; "
            f"the previous PAT can be revoked: {revocable}"
        )
        clusters = self.lab.state()["clusters"]
        # The fleet PAT reaches every factory panel; the image-automation runner keeps its own
        # automation PAT (issue 15: only the runner may push), and no factory panel can push.
        fingerprints = {c["credential_fingerprint"] for c in clusters if not c.get("runner")}
        can_push = [c["name"] for c in clusters if not c.get("runner") and c.get("credential_can_push")]
        runner = next((c["name"] for c in clusters if c.get("runner")), None)
        if runner:
            console.print(
                f"The runner {runner} keeps its own automation credential; no factory panel can push."
            )
        return (
            len(fingerprints) == 1 and report["revocation"]["safe"] and not can_push,
            f"every factory panel proven on version {new_version[:8]}…, read-only; old PAT revocable "
            f"({revocable})",
        )

    def image_push(self) -> tuple[bool, str]:
        lab_doc = json.loads((self.lab_dir / "lab.json").read_text())
        image = f"{lab_doc['acr_login_server']}/ipc/health-monitor"
        console.print(
            scene(
                "developer",
                "pushes ipc/health-monitor:v1.0.8 (the lab's ACR emits ImagePushed, "
                "Event Grid delivers it to the app)",
            )
        )
        self.lab.call("POST", "/_lab/acr/push", {"repository": "ipc/health-monitor", "tag": "v1.0.8"})
        check = self.wait_for_value(lambda: self.first_check(image, "v1.0.8"), "the push is explained")
        markers = "\n".join(
            f"  {m['file']}:{m['line']}  {m['current']} → {m['new']}" for m in check["markers"]
        )
        eta = check.get("eta") or {}
        console.print(
            scene(
                f"verdict: {check['verdict']}",
                f"{check['reason']}\n{markers}\n"
                f"expected commit by {eta.get('commitBy')}, applied by {eta.get('appliedBy')} "
                "(lab time)",
            )
        )
        lower = self.app.call("POST", "images/check", {"image": image, "tag": "v1.0.6"}).json()
        console.print(f"A pipeline's preflight for v1.0.6: [bold]{lower['verdict']}[/] — {lower['reason']}")
        # Flux's image automation (simulated in the lab) commits the tag; the panels then apply it.
        commit = self.wait_for_value(
            lambda: self.automation_commit("v1.0.8"), "the automation commits v1.0.8"
        )
        self.wait_for(
            lambda s: self.applied_share(s, commit, exclude=set()) >= 1.0,
            "every online panel applies the automation commit",
        )
        # The app schedules its follow-up after the ETA (minutes of cluster time); the on-call engineer
        # does not wait: the host's admin API runs the follow-up now, with the message the queue carries.
        self.run_function("image_follow_up", {"checkId": check["id"], "attempt": 1})
        final = self.wait_for_value(lambda: self.follow_up_done(check["id"]), "the follow-up reports")
        follow = final["followUp"]
        console.print(f"Follow-up: [bold]{follow['outcome']}[/] — {follow['reason']}")
        if follow.get("committedBy"):
            console.print(f"The commit came from the image-automation runner {follow['committedBy']}.")
        ok = check["verdict"] == "will-roll-out" and follow["outcome"] == "rolled-out"
        return ok, f"v1.0.8: {check['verdict']} → {follow['outcome']}; v1.0.6 preflight: {lower['verdict']}"

    # --- helpers ----------------------------------------------------------------------------------------
    def run_operation(self, path: str, body: dict[str, Any], label: str) -> dict[str, Any]:
        response = self.app.call("POST", path, body, **{"Idempotency-Key": str(uuid.uuid4())})
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
        accepted = response.json()
        operation_id = accepted.get("operationId") or accepted.get("id")
        console.print(f"→ {response.status_code} operation {operation_id}")
        return self.follow_operation(accepted, label)

    def follow_operation(self, accepted: Mapping[str, Any], label: str) -> dict[str, Any]:
        url = accepted.get("statusUrl") or f"{self.app.url}/api/operations/{accepted['operationId']}"
        with Live(console=console, refresh_per_second=4) as live:

            def show(doc: dict[str, Any]) -> None:
                live.update(self.operation_view(label, doc))

            doc = self.app.poll(url, on_update=show, timeout_s=SCENE_TIMEOUT_S, every_s=LIVE_REFRESH_S)
        console.print(f"{label}: [bold]{doc['status']}[/] {doc['summary']}")
        return doc

    def operation_view(self, label: str, doc: Mapping[str, Any]) -> Table:
        states: dict[str, list[str]] = {}
        for cluster in doc.get("clusters", []):
            ring = self.rings.get(str(cluster["id"]).lower(), "untagged")
            states.setdefault(ring, []).append(cluster["state"])
        return progress_table(f"{label} — {doc.get('status')}", states)

    def follow_rollout(self, version: str) -> dict[str, Any]:
        with Live(console=console, refresh_per_second=4) as live:
            deadline = time.monotonic() + SCENE_TIMEOUT_S
            while True:
                report = self.app.get("credentials")
                rollout = report.get("rollout") or {}
                op_id = rollout.get("operationId")
                doc = self.app.get(f"operations/{op_id}") if op_id else {}
                live.update(group(self.operation_view(f"rollout of version {version[:8]}…", doc)))
                if (doc and doc.get("status") != "running") or time.monotonic() > deadline:
                    break
                time.sleep(LIVE_REFRESH_S)
        console.print(f"rollout: [bold]{doc.get('status')}[/] {doc.get('summary')}")
        return dict(report)

    def version_rolling_out(self, old_version: str) -> str | None:
        report = self.app.get("credentials")
        current = report.get("current") or {}
        rollout = report.get("rollout") or {}
        if current.get("version") not in (None, old_version) and rollout.get("operationId"):
            return str(current["version"])
        return None

    def revocation_safe(self) -> dict[str, Any] | None:
        report = self.app.get("credentials")
        return report if report["revocation"]["safe"] else None

    def first_check(self, image: str, tag: str) -> dict[str, Any] | None:
        response = self.app.call("GET", f"images/checks?image={image}&tag={tag}")
        checks = response.json().get("checks", []) if response.ok else []
        return checks[0] if checks else None

    def follow_up_done(self, check_id: str) -> dict[str, Any] | None:
        doc = self.app.get(f"images/checks/{check_id}")
        follow = doc.get("followUp") or {}
        return doc if follow.get("outcome") else None

    def automation_commit(self, tag: str) -> str | None:
        commits = self.lab.call("GET", "/_lab/devops/commits?branch=main&top=5")
        for commit in commits.get("commits", []):
            if commit.get("author", "").startswith("fluxcdbot") and tag in commit.get("message", ""):
                return str(commit["sha"])
        return None

    def run_function(self, name: str, message: Mapping[str, Any]) -> None:
        response = self.app.session.post(
            f"{self.host_url}/admin/functions/{name}",
            json={"input": json.dumps(message)},
            headers={"x-functions-key": self.master_key},
            timeout=60,
        )
        response.raise_for_status()

    def commit_change(self) -> str:
        """The release itself: sample the conveyor twice as often (a commit to main, as a PR merge makes)."""
        path = "kubernetes/workloads/opcua-gateway/configmap.yaml"
        text = (REPO_ROOT / path).read_text()
        speed = '{"Id": "ns=2;s=Line1.Conveyor.Speed", "OpcSamplingInterval": 1000'
        changed = text.replace(speed, speed.replace("1000", "500"))
        answer = self.lab.call(
            "POST",
            "/_lab/devops/files",
            {
                "files": {path: changed},
                "message": "opcua-gateway: sample conveyor speed every 500 ms",
                "author": "release-pipeline",
            },
        )
        return str(answer.get("commit") or answer.get("sha"))

    @staticmethod
    def applied_count(state: Mapping[str, Any], commit: str) -> int:
        return sum(1 for c in state["clusters"] if c["applied_revision"] == commit)

    @staticmethod
    def applied_share(state: Mapping[str, Any], commit: str, *, exclude: set[str]) -> float:
        panels = [c for c in state["clusters"] if c["online"] and c["id"].lower() not in exclude]
        applied = sum(1 for c in panels if c["applied_revision"] == commit)
        return applied / max(len(panels), 1)

    # --- scene 5 ----------------------------------------------------------------------------------------
    def fleet_health(self) -> tuple[bool, str]:
        """Break four broad-ring panels the way factories do, then read `GET /api/fleet/health`."""
        broad = sorted(
            c["name"]
            for c in self.lab.state()["clusters"]
            if c["online"] and not c.get("runner") and c["tags"].get("ring") == "broad"
        )
        hand_pat, bad_path, no_secret, unplugged = broad[-4:]
        console.print(
            scene(
                "the factories",
                f"{hand_pat}: someone ran `az k8s-configuration flux update --https-key` with a typo; "
                f"{bad_path}: its kustomization path was edited to ./kubernetes/nowhere; "
                f"{no_secret}: its iot-hub-connection secret was deleted; {unplugged}: unplugged.",
            )
        )
        typo = base64.b64encode(b"a-pat-typed-by-hand").decode()
        self.patch_by_hand(hand_pat, {"configurationProtectedSettings": {"httpsKey": typo}})
        self.patch_by_hand(bad_path, {"kustomizations": {"workloads": {"path": "./kubernetes/nowhere"}}})
        self.lab.call("DELETE", f"/_lab/clusters/{no_secret}/secrets/ipc-workloads/iot-hub-connection")
        self.lab.call("POST", f"/_lab/clusters/{unplugged}/connectivity", {"online": False})
        expected = {
            hand_pat: "git-auth-failed",
            bad_path: "kustomization-path-not-found",
            no_secret: "health-check-failed",
            unplugged: "offline",
        }

        def diagnosed() -> dict[str, Any] | None:
            doc = self.app.get("fleet/health?tags=ring:broad&limit=500")
            causes = {row["name"]: row["cause"] for row in doc["panels"]}
            return doc if all(causes.get(name) == cause for name, cause in expected.items()) else None

        doc = self.wait_for_value(diagnosed, "the agents report, Resource Graph catches up")
        table = Table(title=f"fleet health, ring broad: {doc['total']} panels", title_justify="left")
        table.add_column("cause")
        table.add_column("panels", justify="right")
        for cause, count in sorted(doc["counts"].items(), key=lambda item: -item[1]):
            if count:  # the vocabulary has 14 causes; show the ones that occur
                table.add_row(cause, str(count))
        console.print(table)
        for row in doc["panels"]:
            if row["name"] in expected:
                console.print(f"  {row['name']}: [bold]{row['cause']}[/] — {row['message']}")
        detail = self.app.get(f"fleet/panels/{hand_pat}")
        console.print(
            scene(f"GET /api/fleet/panels/{hand_pat}", f"{detail.get('cause')}: {detail.get('hint') or ''}")
        )
        leaked = "a-pat-typed-by-hand" in json.dumps(doc) + json.dumps(detail)
        return not leaked, "; ".join(f"{name}: {cause}" for name, cause in expected.items())

    def patch_by_hand(self, name: str, properties: dict[str, Any]) -> None:
        """What an engineer's `az k8s-configuration flux update` does: a PATCH through ARM."""
        from azure.identity import ManagedIdentityCredential
        from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
            KubernetesConfigurationFluxConfigurationsMgmtClient,
        )

        doc = json.loads((self.lab_dir / "lab.json").read_text())
        panel = next(c for c in self.lab.state()["clusters"] if c["name"] == name)
        saved = {key: os.environ.get(key) for key in doc["env"]}
        os.environ.update(doc["env"])
        try:
            client = KubernetesConfigurationFluxConfigurationsMgmtClient(
                ManagedIdentityCredential(), panel["subscription"], base_url=doc["endpoints"]["arm"]
            )
            client.flux_configurations.begin_update(
                panel["resourceGroup"],
                "Microsoft.Kubernetes",
                "connectedClusters",
                name,
                doc["env"]["FLUXFLEET_FLUX_CONFIGURATION"],
                {"properties": properties},
            ).result()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> None:
        self.wait_for_value(lambda: True if predicate(self.lab.state()) else None, what)

    def wait_for_value(
        self, probe: Callable[[], Any], what: str, *, timeout_s: float = SCENE_TIMEOUT_S
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        with console.status(f"waiting: {what} …"):
            while True:
                value = probe()
                if value:
                    return value
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out waiting: {what}")
                time.sleep(LIVE_REFRESH_S)

    def print_summary(self) -> None:
        table = Table(title="Summary", title_justify="left")
        table.add_column("scene")
        table.add_column("outcome")
        table.add_column("what happened")
        for title, ok, summary in self.results:
            table.add_row(title, "[green]ok" if ok else "[red]failed", summary)
        console.print(table)
