"""Image checks (issue 8): on every ACR push, will the tag roll out, when, and if not, why?

Modules: `model` (values and the stored document), `events` (ACR ImagePushed in both schemas),
`snapshot` (the repository at a commit, cached), `verdict` (the pure decision), `followup` (pure
helpers for the later check), `notifications` (webhook wording), `ports`, `panels` (the fleet's
view condensed for follow-ups), `service` (`ImageChecks`, the orchestration) and `wiring`
(`from_runtime`). See docs/images.md.

Nothing is imported here: the Functions host imports this package when it indexes the app, so it
stays free of PyYAML, the Flux semantics and even the models (tests/functions/test_indexing.py,
bench/cold_start.py); the trigger module imports the rest on first use.
"""

# The queue the follow-up messages travel on. Here, in the package's (import-free) root, because the
# queue trigger's decorator needs the name when `function_app` is indexed, before any model loads.
FOLLOW_UP_QUEUE = "ff-image-followups"
