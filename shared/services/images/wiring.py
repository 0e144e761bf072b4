"""Build the image checks service for this worker from its settings and SDK clients (once, lazily).

The adapters are imported here, inside the function, so importing the trigger module (and so
`function_app`) loads no Azure SDK; the Functions host calls `from_runtime` on the first invocation.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.config import Settings
from shared.services.images.service import ImageCheckConfig, ImageChecks

# Concurrent remote reads per worker: the three reads of a push, file reads of a new commit, tag
# lists of `GET /api/images`, Flux configuration reads of a follow-up. Azure DevOps and ARM budgets
# are per identity, so a handful is plenty and keeps one worker from starving the others.
IO_THREADS = 8


def config_from(settings: Settings) -> ImageCheckConfig:
    return ImageCheckConfig(
        branch=settings.git_branch,
        login_server=settings.acr_login_server,
        sync_interval_s=settings.flux_sync_interval_seconds,
        follow_up_margin_s=settings.images_follow_up_margin_seconds,
        follow_up_max_checks=settings.images_follow_up_max_checks,
        follow_up_recheck_s=settings.images_follow_up_recheck_seconds,
    )


def from_runtime(runtime: Any) -> ImageChecks:
    from shared.adapters.arm_fleet import ArmFleet
    from shared.adapters.image_store import QueueFollowUps, TableCheckStore
    from shared.adapters.notifier import NullNotifier, WebhookNotifier
    from shared.adapters.registry import AcrTagLister
    from shared.adapters.repo_reader import DevOpsRepoReader
    from shared.services.images.panels import FleetPanelReports

    settings: Settings = runtime.settings
    clients = runtime.clients
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="images")
    reader = DevOpsRepoReader(
        org_url=settings.require("devops_org_url"),
        project=settings.require("devops_project"),
        repository=settings.require("devops_repository"),
        credential=clients.credential,
    )
    return ImageChecks(
        reader=reader,
        registry=AcrTagLister(client=clients.registry),
        store=TableCheckStore(service=clients.tables),
        follow_ups=QueueFollowUps(service=clients.queues),
        panels=FleetPanelReports(
            fleet=ArmFleet(clients),
            subscriptions=settings.subscription_ids,
            configuration=settings.flux_configuration,
            executor=executor,
        ),
        notifier=WebhookNotifier(url=settings.webhook_url) if settings.webhook_url else NullNotifier(),
        config=config_from(settings),
        executor=executor,
    )
