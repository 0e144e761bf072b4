"""`Microsoft.ContainerRegistry.ImagePushed`, as the registry's Event Grid system topic emits it.

The shape follows azure-rest-api-specs' `Microsoft.ContainerRegistry/stable/2018-01-01` examples: subject
`repo:tag`, data version "2.0", `data.id` equal to the event id, a `target` describing the manifest and a
`request` naming the registry host (here the lab's login server, as the app compares it with image names).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TypedDict

from lab.acr.models import Manifest, Tag
from lab.core.events import TopicEvent

IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
DATA_VERSION = "2.0"
# The region the lab pretends the registry lives in, and the client a push comes from.
LOCATION = "westeurope"
PUSH_USER_AGENT = "docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0 os/linux arch/amd64"


class PushTarget(TypedDict):
    mediaType: str
    size: int
    digest: str
    length: int
    repository: str
    tag: str


class PushRequest(TypedDict):
    id: str
    host: str
    method: str
    useragent: str


class ImagePushedData(TypedDict):
    id: str
    timestamp: str
    action: str
    location: str
    target: PushTarget
    request: PushRequest


def _timestamp(moment: datetime) -> str:
    """ACR's event timestamps: UTC with milliseconds and `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def image_pushed(
    *, registry_id: str, login_server: str, repository: str, tag: Tag, manifest: Manifest, at: datetime
) -> TopicEvent:
    event_id = str(uuid.uuid4())
    data: ImagePushedData = {
        "id": event_id,
        "timestamp": _timestamp(at),
        "action": "push",
        "location": LOCATION,
        "target": {
            "mediaType": manifest.media_type,
            "size": manifest.size,
            "digest": manifest.digest,
            "length": manifest.size,
            "repository": repository,
            "tag": tag.name,
        },
        "request": {
            "id": str(uuid.uuid4()),
            "host": login_server,
            "method": "PUT",
            "useragent": PUSH_USER_AGENT,
        },
    }
    return TopicEvent(
        id=event_id,
        topic=registry_id,
        subject=f"{repository}:{tag.name}",
        event_type=IMAGE_PUSHED,
        event_time=at,
        data=dict(data),
        data_version=DATA_VERSION,
    )
