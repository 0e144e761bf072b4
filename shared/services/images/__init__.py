"""Image checks (issue 8): on every ACR push, will the tag roll out, when, and if not, why?

Modules: `events` (ACR ImagePushed in both schemas), `requests` (the HTTP API's requests),
`snapshot` (the repository at a commit, cached), `verdict` (the pure decision), `followup` (pure
helpers for the later check), `notifications` (webhook wording), `ports`, `panels` (the fleet's
view condensed for follow-ups) and `service` (`ImageChecks`, the orchestration). The values live in
`shared.models.images`; the composition root (`shared.container`) builds the service. See
docs/images.md.

Nothing is imported here: the Functions host imports this package when it indexes the app, so it
stays free of PyYAML, the Flux semantics and even the models (tests/functions/test_indexing.py,
bench/cold_start.py); the trigger module imports the rest on first use.
"""
