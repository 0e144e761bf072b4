"""The PAT Lifecycle API's backend: Pats_Create / Pats_List / Pats_Get / Pats_Update / Pats_Revoke.

The tokens themselves live in the organization's store (`lab.devops.pats.PatStore`), which the Git
server checks; this backend applies the rules of the API on top of it, with the outcomes the real
controller returns: validation failures are not HTTP errors but a `patTokenError` value in a 200
body (`displayNameRequired`, `invalidScope`, `invalidValidTo`, `tokenNotFound`, `invalidToken`,
`invalidAuthorizationId`), and a caller only ever sees the PATs it owns.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from lab.devops.pats import PatRecord, PatStatus, PatStore, scope_is_known

if TYPE_CHECKING:
    from lab.core.clock import LabClock
    from lab.core.tokens import Principal

PatTokenError = Literal[
    "none",
    "displayNameRequired",
    "invalidDisplayName",
    "invalidValidTo",
    "invalidScope",
    "tokenNotFound",
    "invalidToken",
    "invalidAuthorizationId",
]
DisplayFilterOption = Literal["active", "revoked", "expired", "all"]
SortByOption = Literal["displayName", "displayDate", "status"]

DISPLAY_FILTER_OPTIONS: dict[str, DisplayFilterOption] = {
    o.lower(): o for o in ("active", "revoked", "expired", "all")
}
SORT_BY_OPTIONS: dict[str, SortByOption] = {o.lower(): o for o in ("displayName", "displayDate", "status")}

# A PAT lives at most one year in Azure DevOps (the portal's maximum); a longer validTo is refused.
MAX_LIFESPAN = timedelta(days=366)
# Without a validTo the lab gives a PAT the portal's default lifespan.
DEFAULT_LIFESPAN = timedelta(days=30)
# The lab's limit on a PAT's name (Azure DevOps does not document one; the portal caps input there).
MAX_DISPLAY_NAME_LENGTH = 256
# ListPats: the controller's default page size, and the documented maximum.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_STATUS_ORDER: dict[PatStatus, int] = {"active": 0, "expired": 1, "revoked": 2}


@dataclass(frozen=True)
class PatResult:
    """`PatTokenResult`: a record (and, on create only, the token value) or an error."""

    record: PatRecord | None
    error: PatTokenError = "none"
    token: str | None = None


@dataclass(frozen=True)
class PatPage:
    records: list[PatRecord]
    continuation_token: str


def parse_authorization_id(value: str | None) -> str | None:
    """A GUID in its canonical lower-case form, or None."""
    try:
        return str(uuid.UUID(value or ""))
    except ValueError:
        return None


def parse_valid_to(value: object) -> datetime | None:
    """ISO 8601 (any fraction, `Z` or offset; no offset means UTC as .NET binds it)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


class PatLifecycleBackend:
    def __init__(self, *, pats: PatStore, clock: LabClock, org: str) -> None:
        self.pats = pats
        self.clock = clock
        self.org = org

    def _validate(
        self, *, display_name: object, scope: object, valid_to: object, valid_to_given: bool
    ) -> PatTokenError:
        if not isinstance(display_name, str) or not display_name.strip():
            return "displayNameRequired"
        if len(display_name) > MAX_DISPLAY_NAME_LENGTH:
            return "invalidDisplayName"
        if not isinstance(scope, str) or not scope_is_known(scope):
            return "invalidScope"
        if valid_to_given:
            moment = parse_valid_to(valid_to)
            now = self.clock.now()
            if moment is None or moment <= now or moment > now + MAX_LIFESPAN:
                return "invalidValidTo"
        return "none"

    def create_pat(
        self, owner: Principal, *, display_name: object, scope: object, valid_to: object, all_orgs: bool
    ) -> PatResult:
        error = self._validate(
            display_name=display_name, scope=scope, valid_to=valid_to, valid_to_given=valid_to is not None
        )
        if error != "none":
            return PatResult(None, error)
        assert isinstance(display_name, str)
        assert isinstance(scope, str)
        expiry = parse_valid_to(valid_to) or self.clock.now() + DEFAULT_LIFESPAN
        token, record = self.pats.mint(owner, scope, expiry, display_name, None if all_orgs else self.org)
        return PatResult(record, "none", token)

    def get_pat(self, owner: Principal, authorization_id: str | None) -> PatResult:
        canonical = parse_authorization_id(authorization_id)
        if canonical is None:
            return PatResult(None, "invalidAuthorizationId")
        record = self.pats.get(canonical)
        if record is None or record.owner.object_id != owner.object_id:
            return PatResult(None, "tokenNotFound")
        return PatResult(record)

    def update_pat(
        self,
        owner: Principal,
        *,
        authorization_id: object,
        display_name: object,
        scope: object,
        valid_to: object,
        all_orgs: object,
    ) -> PatResult:
        found = self.get_pat(owner, authorization_id if isinstance(authorization_id, str) else None)
        if found.record is None:
            return found
        record = found.record
        if record.status(self.clock.now()) != "active":
            return PatResult(None, "invalidToken")
        new_name = record.display_name if display_name is None else display_name
        new_scope = record.scope if scope is None else scope
        error = self._validate(
            display_name=new_name, scope=new_scope, valid_to=valid_to, valid_to_given=valid_to is not None
        )
        if error != "none":
            return PatResult(None, error)
        assert isinstance(new_name, str)
        assert isinstance(new_scope, str)
        org = record.org if all_orgs is None else (None if all_orgs else self.org)
        updated = self.pats.update(
            record.authorization_id,
            display_name=new_name,
            scope=new_scope,
            valid_to=parse_valid_to(valid_to) or record.valid_to,
            org=org,
        )
        return PatResult(updated)

    def revoke_pat(self, owner: Principal, authorization_id: str) -> bool:
        """False when the caller has no such PAT."""
        record = self.pats.get(authorization_id)
        if record is None or record.owner.object_id != owner.object_id:
            return False
        self.pats.revoke(record.authorization_id)
        return True

    def list_pats(
        self,
        owner: Principal,
        *,
        display_filter: DisplayFilterOption,
        sort_by: SortByOption,
        ascending: bool,
        start: int,
        top: int,
    ) -> PatPage:
        now = self.clock.now()
        records = [
            r for r in self.pats.list(owner) if display_filter == "all" or r.status(now) == display_filter
        ]
        if sort_by == "displayName":
            records.sort(key=lambda r: (r.display_name.lower(), r.valid_from), reverse=not ascending)
        elif sort_by == "displayDate":
            records.sort(key=lambda r: (r.valid_to, r.display_name.lower()), reverse=not ascending)
        else:
            records.sort(
                key=lambda r: (_STATUS_ORDER[r.status(now)], r.display_name.lower()), reverse=not ascending
            )
        page = records[start : start + top]
        more = start + top < len(records)
        return PatPage(page, encode_continuation(start + top) if more else "")


def encode_continuation(row: int) -> str:
    """Continuation tokens are opaque; this one encodes the next row to return."""
    return base64.urlsafe_b64encode(f"row:{row}".encode()).decode()


def decode_continuation(token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, row = text.partition(":")
    return int(row) if prefix == "row" and row.isdigit() else None
