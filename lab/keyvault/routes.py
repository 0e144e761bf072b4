"""Key Vault's secrets routes (the URL table), each handler wrapped to render Key Vault errors."""

from __future__ import annotations

from aiohttp import web

from lab.keyvault.responses import SecretResponses, handles_errors


def add_secret_routes(app: web.Application, responses: SecretResponses) -> None:
    r = responses
    table = [
        ("GET", "/secrets", r.get_secrets),
        ("PUT", "/secrets/{name}", r.set_secret),
        ("DELETE", "/secrets/{name}", r.delete_secret),
        # `versions` is registered before `{version}`: a version id is 32 hex digits, never "versions".
        ("GET", "/secrets/{name}/versions", r.get_secret_versions),
        # An empty version (`/secrets/{name}/`, what the SDK sends for "latest") and no version mean the same.
        ("GET", "/secrets/{name}", r.get_secret),
        ("GET", "/secrets/{name}/", r.get_secret),
        ("GET", "/secrets/{name}/{version}", r.get_secret),
        ("PATCH", "/secrets/{name}", r.update_secret),
        ("PATCH", "/secrets/{name}/", r.update_secret),
        ("PATCH", "/secrets/{name}/{version}", r.update_secret),
        ("GET", "/deletedsecrets", r.get_deleted_secrets),
        ("GET", "/deletedsecrets/{name}", r.get_deleted_secret),
        ("DELETE", "/deletedsecrets/{name}", r.purge_deleted_secret),
        ("POST", "/deletedsecrets/{name}/recover", r.recover_deleted_secret),
    ]
    for method, path, handler in table:
        app.router.add_route(method, path, handles_errors(handler))
