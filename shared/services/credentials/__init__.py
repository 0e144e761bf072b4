"""Credential rotation (issue 7): Key Vault is the one place the Flux Git PAT lives; the app does the rest.

The modules, from the pure to the orchestrating:

- `model`: the values (secret versions, probe outcomes, preflight reports, warnings, the credential map);
- `ports`: the Protocols the logic talks to (secret store, Git probe, notifier, ledger, readiness);
- `keyvault_events`: Key Vault's Event Grid payloads, parsed the forgiving way Azure's own samples require;
- `preflight`: is a new version fit to be rolled out (enabled, valid, has an `exp`, authenticates)?
- `expiry`: which warning threshold a version has crossed;
- `proof`: did a panel's agent fetch successfully *after* the change (ARM's clock only)?
- `rings`: canary → early → broad from the `ring` tag;
- `rollout` and `migration`: the two `ChangeStrategy`s the fleet-change engine drives — a PAT version
  to every panel, and panels off PATs to workload identity (`workload_identity` says who is ready);
- `report`: what `GET /api/credentials` shows (versions per panel, stragglers, safe revocation);
- `service`: the entry points the triggers call (timer, Key Vault events, HTTP);
- `composition`: wiring to Azure once per worker, and the strategies the engine loads.

Nothing here imports an Azure SDK; the adapters in `shared.adapters` implement the ports.
"""
