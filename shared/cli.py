"""`python -m shared.cli pat ...`: the steps of PAT rotation that need a *person's* identity.

(And `key-id`, which prints the audit id of a function key read from stdin, for the allow-list.)

Microsoft does not let a managed identity or service principal create or revoke Azure DevOps PATs, so
the Functions app never does either. An operator runs, with their own sign-in:

- `pat mint --org ORG --days 90` — creates an organization-scoped, read-only (`vso.code`) PAT through
  the PAT lifecycle API and stores it straight into Key Vault as a new version of the Flux secret, with
  `exp` = the PAT's expiry and tags naming its `authorizationId`. The value goes from one API response
  to the other in memory: it is never printed, logged or written anywhere else. Key Vault's
  `SecretNewVersionCreated` event then makes the app validate it and roll it out.
- `pat revoke-superseded --org ORG` — asks the app (`GET /api/credentials`) whether every panel is
  proven on the current version and, only then, revokes the superseded PATs the app lists.

Both take `--purpose fleet|automation` (issue 15): `fleet` (the default) is the read-only PAT every
factory panel fetches with (`vso.code`, secret `FLUXFLEET_PAT_SECRET_NAME`); `automation` is the write
PAT of the one image-automation runner (`vso.code_write`, secret `FLUXFLEET_AUTOMATION_PAT_SECRET_NAME`).

Credentials, most to least explicit: `--lab DIR` (the lab's operator, `UsernamePasswordCredential`),
`--credential cli|default|interactive` or `FLUXFLEET_OPERATOR_CREDENTIAL` (same values, or `lab:DIR`).
The default is the Azure CLI's sign-in (`az login`); `default` is `DefaultAzureCredential` without
managed or workload identity, which could never mint a PAT anyway.

Exit codes: 0 done, 1 error (message on stderr), 2 usage, 3 refused because revoking is not yet safe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from shared.config import Settings
from shared.errors import FluxfleetError, NotFound
from shared.timestamps import format_time

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.adapters.pat_api import PatLifecycleClient

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_SAFE = 0, 1, 2, 3
# The scope factory panels' Flux sources need: read code. Nothing more. Only the image-automation runner
# pushes (its ImageUpdateAutomation commits), with its own PAT: `--purpose automation` mints write
# (`vso.code_write`). A scope that contradicts the purpose is refused (a write PAT on factory panels is
# exactly what issue 15 removes; the app's preflight would refuse it too).
PAT_SCOPE = "vso.code"
PAT_SCOPES = ("vso.code", "vso.code_write")
PURPOSES = ("fleet", "automation")
# Azure DevOps caps PAT lifetime at one year (organizations may set less by policy).
MAX_DAYS = 365
DEFAULT_DAYS = 90
# The patTokenError of revoking a PAT that no longer exists: the goal is reached, not an error.
ALREADY_GONE = "authorizationNotFound"
OPERATOR_CREDENTIAL_ENV = "FLUXFLEET_OPERATOR_CREDENTIAL"
APP_URL_ENV = "FLUXFLEET_APP_URL"
APP_KEY_ENV = "FLUXFLEET_APP_KEY"
# Reading the app's report: it lists the fleet, which takes a few seconds at most.
APP_TIMEOUT_S = 60


@dataclass(frozen=True)
class LabContext:
    """What `--lab DIR` provides: the lab's app settings, its operator, and a running host if any."""

    env: dict[str, str]
    operator: dict[str, str]
    app_url: str | None
    app_key: str | None


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args, out=out))
    except FluxfleetError as exc:
        print(f"error: {exc.message}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__.split("\n\n")[0])
    groups = parser.add_subparsers(dest="group", required=True)
    pat = groups.add_parser("pat", help="mint and revoke the Flux Git PAT (needs a person's sign-in)")
    commands = pat.add_subparsers(dest="command", required=True)

    mint = commands.add_parser("mint", help="create a read-only PAT and store it as a new Key Vault version")
    _common(mint)
    mint.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"validity (1-{MAX_DAYS}, default {DEFAULT_DAYS})"
    )
    mint.add_argument(
        "--display-name", help="the PAT's name in Azure DevOps (default: fluxfleet-<org>-<date>)"
    )
    mint.add_argument(
        "--scope",
        choices=PAT_SCOPES,
        default=None,
        help="default from --purpose: vso.code (fleet, read) or vso.code_write (automation, read & write)",
    )
    mint.add_argument("--vault-url", help="Key Vault URL (default: FLUXFLEET_KEYVAULT_URL)")
    mint.add_argument(
        "--secret-name",
        help="secret name (default by --purpose: FLUXFLEET_PAT_SECRET_NAME / flux-gitops-pat, or "
        "FLUXFLEET_AUTOMATION_PAT_SECRET_NAME / flux-gitops-automation-pat)",
    )
    mint.add_argument("--json", action="store_true", help="print the result as JSON (never the token)")
    mint.set_defaults(run=run_mint)

    revoke = commands.add_parser("revoke-superseded", help="revoke old PATs once the app reports it is safe")
    _common(revoke)
    revoke.add_argument("--app-url", help=f"the app's base URL (default: {APP_URL_ENV})")
    revoke.add_argument("--app-key", help=f"a function key for GET /api/credentials (default: {APP_KEY_ENV})")
    revoke.add_argument("--dry-run", action="store_true", help="say what would be revoked; revoke nothing")
    revoke.add_argument("--json", action="store_true", help="print the result as JSON")
    revoke.set_defaults(run=run_revoke_superseded)

    key_id = groups.add_parser(
        "key-id",
        help="print the audit id of a function key read from stdin (for FLUXFLEET_ALLOWED_PRINCIPALS)",
    )
    key_id.set_defaults(run=run_key_id)
    return parser


# --- key-id ----------------------------------------------------------------------------------------------
def run_key_id(args: argparse.Namespace, *, out: TextIO, read: Callable[[], str] | None = None) -> int:
    """`key-id`: the id a function key appears as in `requestedBy` and the allow-list.

    The key is read from stdin (`az functionapp keys list ... --query functionKeys.default -o tsv |
    python -m shared.cli key-id`), so it is never on a command line or in shell history; only the id,
    a hash prefix that cannot be turned back into the key, is printed.
    """
    from shared.principals import function_key_id

    key = (read or sys.stdin.read)().strip()
    if not key:
        raise FluxfleetError("no function key on stdin (pipe the key in; it is never an argument)")
    print(function_key_id(key), file=out)
    return 0


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--org", required=True, help="Azure DevOps organization (the PAT is limited to it)")
    command.add_argument(
        "--purpose",
        choices=PURPOSES,
        default="fleet",
        help="fleet: the factory panels' read-only PAT (default); automation: the image-automation "
        "runner's write PAT",
    )
    command.add_argument("--lab", type=Path, help="use the lab in DIR (its operator sign-in and settings)")
    command.add_argument(
        "--credential",
        choices=("cli", "default", "interactive"),
        help=f"how to sign in (default: {OPERATOR_CREDENTIAL_ENV} or cli)",
    )
    command.add_argument("--vssps-url", help="PAT lifecycle API host (default: FLUXFLEET_DEVOPS_VSSPS_URL)")


# --- pat mint ------------------------------------------------------------------------------------------
def run_mint(args: argparse.Namespace, *, out: TextIO) -> int:
    from shared.adapters.keyvault import store_new_version

    if not 1 <= args.days <= MAX_DAYS:
        raise FluxfleetError(f"--days must be between 1 and {MAX_DAYS}")
    lab = _lab(args)
    settings = _settings(lab)
    credential = _credential(args, lab)
    vault_url = args.vault_url or settings.keyvault_url
    if not vault_url:
        raise FluxfleetError("no Key Vault: pass --vault-url or set FLUXFLEET_KEYVAULT_URL")
    automation = args.purpose == "automation"
    wanted = "vso.code_write" if automation else PAT_SCOPE
    if args.scope is not None and args.scope != wanted:
        raise FluxfleetError(
            f"--scope {args.scope} contradicts --purpose {args.purpose} (which needs {wanted}): factory "
            "panels hold a read-only PAT, only the image-automation runner a write one"
        )
    args.scope = wanted
    default_secret = settings.automation_pat_secret_name if automation else settings.pat_secret_name
    secret_name = args.secret_name or default_secret
    client = _pat_client(args, settings, credential)
    valid_to = (datetime.now(UTC) + timedelta(days=args.days)).replace(microsecond=0)
    suffix = "-automation" if automation else ""
    display_name = args.display_name or f"fluxfleet-{args.org}{suffix}-{valid_to:%Y%m%d}"
    minted = client.create(display_name=display_name, scope=args.scope, valid_to=valid_to, all_orgs=False)
    tags = {
        "authorizationId": minted.pat.authorization_id,
        "scope": minted.pat.scope or args.scope,
        "displayName": minted.pat.display_name or display_name,
        "organization": args.org,
        "mintedBy": "fluxfleet-cli",
    }
    try:
        stored = store_new_version(
            client=_secret_client(vault_url, credential, settings),
            secret_name=secret_name,
            value=minted.token,
            expires_on=minted.pat.valid_to or valid_to,
            tags=tags,
        )
    except FluxfleetError as exc:
        # An unstored PAT must not stay valid: nobody could rotate or even see it.
        _revoke_quietly(client, minted.pat.authorization_id)
        raise FluxfleetError(
            f"the PAT was minted but could not be stored in Key Vault, so it was revoked again: {exc.message}"
        ) from None
    result = {
        "authorizationId": minted.pat.authorization_id,
        "displayName": minted.pat.display_name or display_name,
        "scope": minted.pat.scope or args.scope,
        "validTo": format_time(minted.pat.valid_to or valid_to),
        "vault": vault_url,
        "secret": secret_name,
        "version": stored.version,
    }
    if args.json:
        print(json.dumps(result, indent=2), file=out)
    else:
        print(
            f"Minted PAT '{result['displayName']}' ({result['scope']}, "
            f"authorizationId {result['authorizationId']}, valid to {result['validTo']}).\n"
            f"Stored as version {stored.version} of secret '{secret_name}' in {vault_url}.\n"
            "fluxfleet validates it and rolls it out ring by ring; follow it with GET /api/credentials.",
            file=out,
        )
    return EXIT_OK


def _revoke_quietly(client: PatLifecycleClient, authorization_id: str) -> None:
    try:
        client.revoke(authorization_id)
    except FluxfleetError as exc:
        print(f"warning: revoke {authorization_id} by hand in Azure DevOps: {exc.message}", file=sys.stderr)


# --- pat revoke-superseded -----------------------------------------------------------------------------
def run_revoke_superseded(args: argparse.Namespace, *, out: TextIO) -> int:
    from shared.adapters.pat_api import PatApiError

    lab = _lab(args)
    report = _app_report(args, lab)
    if args.purpose == "automation":
        report = report.get("automation") or {}
    revocation = report.get("revocation") or {}
    current = report.get("current") or {}
    if not revocation.get("safe"):
        reason = revocation.get("reason") or "the app does not report revoking as safe"
        _emit(
            args, out, {"revoked": [], "safe": False, "reason": reason}, f"Not revoking anything: {reason}."
        )
        return EXIT_NOT_SAFE
    keep = current.get("authorizationId")
    candidates = [
        r for r in revocation.get("revocable") or [] if r.get("authorizationId") != keep or not keep
    ]
    revoked: list[str] = []
    skipped: list[dict[str, str]] = []
    client = None if args.dry_run else _pat_client(args, _settings(lab), _credential(args, lab))
    for item in candidates:
        authorization_id = item.get("authorizationId")
        if not authorization_id:
            skipped.append({"version": item["version"], "why": "no authorizationId tag: revoke it by hand"})
            continue
        if client is None:
            revoked.append(authorization_id)
            continue
        try:
            client.revoke(authorization_id)
        except (PatApiError, NotFound) as exc:
            if isinstance(exc, PatApiError) and exc.pat_token_error != ALREADY_GONE:
                raise
            skipped.append({"version": item["version"], "why": "already revoked or not yours"})
            continue
        revoked.append(authorization_id)
    verb = "Would revoke" if args.dry_run else "Revoked"
    lines = [f"{verb} {len(revoked)} superseded PAT(s): {', '.join(revoked) or 'none'}."]
    lines += [f"Skipped version {s['version']}: {s['why']}." for s in skipped]
    _emit(
        args,
        out,
        {"revoked": revoked, "skipped": skipped, "safe": True, "dryRun": args.dry_run},
        "\n".join(lines),
    )
    return EXIT_OK


def _app_report(args: argparse.Namespace, lab: LabContext | None) -> dict[str, Any]:
    import requests

    url = args.app_url or os.environ.get(APP_URL_ENV) or (lab.app_url if lab else None)
    key = args.app_key or os.environ.get(APP_KEY_ENV) or (lab.app_key if lab else None)
    if not url:
        raise FluxfleetError(f"where is the app? pass --app-url or set {APP_URL_ENV}")
    headers = {"x-functions-key": key} if key else {}
    try:
        response = requests.get(url.rstrip("/") + "/api/credentials", headers=headers, timeout=APP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise FluxfleetError(f"the app did not answer GET /api/credentials ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise FluxfleetError(f"GET /api/credentials answered HTTP {response.status_code}; nothing revoked")
    body: dict[str, Any] = response.json()
    return body


def _emit(args: argparse.Namespace, out: TextIO, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, indent=2) if args.json else text, file=out)


# --- plumbing ------------------------------------------------------------------------------------------
def _lab(args: argparse.Namespace) -> LabContext | None:
    directory: Path | None = args.lab
    chosen = os.environ.get(OPERATOR_CREDENTIAL_ENV, "")
    if directory is None and chosen.startswith("lab:"):
        directory = Path(chosen.removeprefix("lab:"))
    if directory is None:
        return None
    try:
        doc = json.loads((directory / "lab.json").read_text())
    except (OSError, ValueError) as exc:
        raise FluxfleetError(f"--lab {directory}: cannot read lab.json ({exc})") from None
    env = {str(k): str(v) for k, v in (doc.get("env") or {}).items()}
    # The lab's CA: this process's HTTPS clients (requests, azure-core, MSAL) must trust it.
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if name in env:
            os.environ[name] = env[name]
    app_url = app_key = None
    for state_file in sorted(directory.glob("host-state*.json")):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        app_url, app_key = state.get("url"), state.get("function_key")
        break
    return LabContext(env=env, operator=dict(doc.get("operator") or {}), app_url=app_url, app_key=app_key)


def _settings(lab: LabContext | None) -> Settings:
    """App settings for the CLI: the lab's, over this shell's environment."""
    return Settings.from_env({**os.environ, **(lab.env if lab else {})})


def _credential(args: argparse.Namespace, lab: LabContext | None) -> TokenCredential:
    if lab is not None:
        return _lab_operator(lab)
    choice = args.credential or os.environ.get(OPERATOR_CREDENTIAL_ENV) or "cli"
    factories: dict[str, Callable[[], TokenCredential]] = {
        "cli": _azure_cli,
        "default": _default_without_managed_identity,
        "interactive": _interactive,
    }
    if choice not in factories:
        raise FluxfleetError(
            f"{OPERATOR_CREDENTIAL_ENV}={choice!r}: use cli, default, interactive or lab:DIR"
        )
    return factories[choice]()


def _lab_operator(lab: LabContext) -> TokenCredential:
    from azure.identity import UsernamePasswordCredential

    operator = lab.operator
    if not operator:
        raise FluxfleetError("lab.json has no operator block")
    # The password flow is deprecated for production (no MFA) and used for that reason only here: the
    # lab's operator is a password user so tests and the demo sign in unattended. MSAL warns about the
    # flow on every token request; in the lab that warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        credential = UsernamePasswordCredential(
            operator["client_id"],
            operator["username"],
            operator["password"],
            tenant_id=operator.get("tenant_id"),
            authority=operator["authority"],
            disable_instance_discovery=True,
        )
    return _WithoutDeprecationWarnings(credential)


class _WithoutDeprecationWarnings:
    """A credential whose token requests run with DeprecationWarning silenced (the lab's password flow)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._inner.get_token(*scopes, **kwargs)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._inner.get_token_info(*scopes, options=options)


def _azure_cli() -> TokenCredential:
    from azure.identity import AzureCliCredential

    return AzureCliCredential()


def _default_without_managed_identity() -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    # A managed or workload identity can never mint or revoke a PAT: leave them out so a person's
    # sign-in is what is used, or the command fails clearly.
    return DefaultAzureCredential(
        exclude_managed_identity_credential=True, exclude_workload_identity_credential=True
    )


def _interactive() -> TokenCredential:
    from azure.identity import InteractiveBrowserCredential

    return InteractiveBrowserCredential()


def _pat_client(
    args: argparse.Namespace, settings: Settings, credential: TokenCredential
) -> PatLifecycleClient:
    from shared.adapters.pat_api import PatLifecycleClient

    return PatLifecycleClient(
        vssps_url=args.vssps_url or settings.devops_vssps_url, organization=args.org, credential=credential
    )


def _secret_client(vault_url: str, credential: TokenCredential, settings: Settings) -> Any:
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url, credential, verify_challenge_resource=settings.keyvault_verify_challenge_resource
    )


if __name__ == "__main__":
    sys.exit(main())
