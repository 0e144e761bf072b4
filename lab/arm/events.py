"""The events ARM publishes on a subscription's Event Grid system topic when a panel joins or leaves Arc.

"Resource events are created for PUT, PATCH, POST, and DELETE operations that are sent to
management.azure.com" (MicrosoftDocs/azure-docs `articles/event-grid/event-schema-subscriptions.md`).
Connecting a cluster (`az connectedk8s connect`) is a PUT of `Microsoft.Kubernetes/connectedClusters`, so
the subscription's topic `/subscriptions/{id}` raises `Microsoft.Resources.ResourceWriteSuccess` with the
resource id as subject and `dataVersion` "2"; deleting it raises `ResourceDeleteSuccess`. The data keys
and shapes follow that doc's samples and azure-rest-api-specs
`specification/eventgrid/data-plane/Microsoft.Resources/stable/2018-01-01/examples/{event-grid-schema,
cloud-events-schema}/resource_write_success.json`: `authorization {scope, action, evidence}`, `claims`
(the caller's token claims, never the token), `correlationId`, `resourceProvider`, `resourceUri`,
`operationName`, `status`, `subscriptionId`, `tenantId`; `httpRequest` "is only included when updating an
existing resource or deleting a resource", so a new cluster's event has none and a delete's has one.
The caller is the operator who onboards panels (the lab's user, signed in with the Azure CLI's client).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from lab.core.events import TopicEvent
from lab.identity.entra import OPERATOR_CLIENT_ID, OPERATOR_DISPLAY_NAME, operator_principal

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"
# Resource events carry data version "2" (both samples of event-schema-subscriptions.md).
RESOURCE_EVENT_DATA_VERSION = "2"
CONNECTED_CLUSTERS_PROVIDER = "Microsoft.Kubernetes"
# The built-in role an operator holds to onboard clusters: "Kubernetes Cluster - Azure Arc Onboarding".
ONBOARDING_ROLE = "Kubernetes Cluster - Azure Arc Onboarding"
ONBOARDING_ROLE_DEFINITION_ID = "34e09817-6cbe-4d01-b1a2-e0eac5743d41"
# The claims of an operator's ARM token live an hour (Entra's default access-token lifetime).
_TOKEN_LIFETIME = timedelta(hours=1)
_ARM_AUDIENCE = "https://management.azure.com"
_CONNECTED_CLUSTERS_API_VERSION = "2024-01-01"


def subscription_topic(subscription: str) -> str:
    """The subscription's system topic, as Event Grid names it in `topic` / CloudEvents `source`."""
    return f"/subscriptions/{subscription}"


def connected_cluster_event(
    *,
    event_type: str,
    resource_id: str,
    subscription: str,
    tenant_id: str,
    at: datetime,
    arm_endpoint: str,
) -> TopicEvent:
    """A ResourceWriteSuccess (connect) or ResourceDeleteSuccess (disconnect) of one connectedCluster."""
    verb = "delete" if event_type == DELETE_SUCCESS else "write"
    action = f"{CONNECTED_CLUSTERS_PROVIDER}/connectedClusters/{verb}"
    operator = operator_principal(tenant_id)
    issued = int((at - timedelta(minutes=5)).timestamp())  # the operator signed in a little before
    data: dict[str, Any] = {
        "authorization": {
            "scope": resource_id,
            "action": action,
            "evidence": {
                "role": ONBOARDING_ROLE,
                "roleAssignmentScope": subscription_topic(subscription),
                "roleAssignmentId": uuid.uuid5(
                    uuid.NAMESPACE_URL, f"{subscription}/{operator.object_id}"
                ).hex,
                "roleDefinitionId": ONBOARDING_ROLE_DEFINITION_ID.replace("-", ""),
                "principalId": operator.object_id.replace("-", ""),
                "principalType": "User",
            },
        },
        "claims": {
            "aud": _ARM_AUDIENCE,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": str(issued),
            "nbf": str(issued),
            "exp": str(issued + int(_TOKEN_LIFETIME.total_seconds())),
            "appid": OPERATOR_CLIENT_ID,
            "appidacr": "0",
            "name": OPERATOR_DISPLAY_NAME,
            "http://schemas.microsoft.com/identity/claims/objectidentifier": operator.object_id,
            "http://schemas.microsoft.com/identity/claims/scope": "user_impersonation",
            "http://schemas.microsoft.com/identity/claims/tenantid": tenant_id,
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": operator.name,
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": operator.name,
            "ver": "1.0",
        },
        "correlationId": str(uuid.uuid4()),
        "resourceProvider": CONNECTED_CLUSTERS_PROVIDER,
        "resourceUri": resource_id,
        "operationName": action,
        "status": "Succeeded",
        "subscriptionId": subscription,
        "tenantId": tenant_id,
    }
    if verb == "delete":
        data["httpRequest"] = {
            "clientRequestId": str(uuid.uuid4()),
            "clientIpAddress": "127.0.0.1",
            "method": "DELETE",
            "url": f"{arm_endpoint}{resource_id}?api-version={_CONNECTED_CLUSTERS_API_VERSION}",
        }
    return TopicEvent(
        id=str(uuid.uuid4()),
        topic=subscription_topic(subscription),
        subject=resource_id,
        event_type=event_type,
        event_time=at,
        data=data,
        data_version=RESOURCE_EVENT_DATA_VERSION,
    )
