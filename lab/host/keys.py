"""The host's keys: master, the default function key and the Event Grid extension's system key.

Azure keeps them in the host's secrets store so they survive restarts; the lab keeps them in
`DIR/host-keys.json` (same shape as the host's own secrets file) for the same reason: a restarted host,
or a second host on the same lab, must accept the URLs Event Grid subscriptions were created with.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from lab.host.errors import HostStartupError

KEYS_FILE = "host-keys.json"
# Azure's generated keys are 56 URL-safe characters; 42 random bytes encode to exactly that.
KEY_BYTES = 42
FUNCTION_KEY_NAME = "default"
EVENTGRID_KEY_NAME = "eventgrid_extension"


@dataclass(frozen=True, repr=False)
class HostKeys:
    master: str
    function_default: str
    eventgrid_extension: str

    def __repr__(self) -> str:  # never print key values by accident
        return "HostKeys(<redacted>)"

    def is_master(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.master)

    def is_function_key(self, presented: str | None) -> bool:
        """Function auth level: the host function key or the master key."""
        if presented is None:
            return False
        return hmac.compare_digest(presented, self.function_default) or self.is_master(presented)

    def is_eventgrid_key(self, presented: str | None) -> bool:
        """The Event Grid webhook: its system key or the master key."""
        if presented is None:
            return False
        return hmac.compare_digest(presented, self.eventgrid_extension) or self.is_master(presented)


def _document(keys: HostKeys) -> dict[str, object]:
    return {
        "masterKey": {"name": "master", "value": keys.master, "encrypted": False},
        "functionKeys": [{"name": FUNCTION_KEY_NAME, "value": keys.function_default, "encrypted": False}],
        "systemKeys": [{"name": EVENTGRID_KEY_NAME, "value": keys.eventgrid_extension, "encrypted": False}],
        "source": "lab",
    }


def _parse(path: Path) -> HostKeys:
    try:
        doc = json.loads(path.read_text())
        function_keys = {item["name"]: item["value"] for item in doc["functionKeys"]}
        system_keys = {item["name"]: item["value"] for item in doc["systemKeys"]}
        return HostKeys(
            master=str(doc["masterKey"]["value"]),
            function_default=str(function_keys[FUNCTION_KEY_NAME]),
            eventgrid_extension=str(system_keys[EVENTGRID_KEY_NAME]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise HostStartupError(f"{path} is not a host keys file; delete it to generate new keys") from exc


def load_or_create_keys(lab_dir: Path) -> HostKeys:
    """The lab dir's keys, generated on first use. Safe when several hosts start at once."""
    path = lab_dir / KEYS_FILE
    if path.exists():
        return _parse(path)
    fresh = HostKeys(
        master=secrets.token_urlsafe(KEY_BYTES),
        function_default=secrets.token_urlsafe(KEY_BYTES),
        eventgrid_extension=secrets.token_urlsafe(KEY_BYTES),
    )
    tmp = path.with_name(f".{KEYS_FILE}.{os.getpid()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(_document(fresh), handle, indent=2)
    try:
        # link() fails if another host created the file first: exactly one set of keys wins.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return _parse(path)
