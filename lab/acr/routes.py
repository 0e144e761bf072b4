"""ACR's routes (the URL table): token endpoints and the `/acr/v1` metadata API, errors rendered ACR's way."""

from __future__ import annotations

from aiohttp import web

from lab.acr.responses import RegistryResponses, handles_errors, handles_token_errors


def add_registry_routes(app: web.Application, responses: RegistryResponses) -> None:
    app.router.add_post("/oauth2/exchange", handles_token_errors(responses.exchange))
    app.router.add_post("/oauth2/token", handles_token_errors(responses.token))
    app.router.add_get("/acr/v1/_catalog", handles_errors(responses.get_repositories))
    # Repository names contain "/", so everything below /acr/v1/ is parsed by one handler.
    app.router.add_get("/acr/v1/{tail:.+}", handles_errors(responses.dispatch))
