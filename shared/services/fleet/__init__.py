"""Fleet-wide changes: one engine behind suspend, resume, credential rollout and every later kind.

Why one engine: each change kind differs only in *what* it writes to a panel's Flux configuration and
*how* it knows the panel's agent received it. Everything else — selecting panels, recording who/when/
why, staging (rings), fanning out through queue messages so no invocation holds 10,000 panels, restart
safety, tracking offline panels through Arc's 48-hour delivery window, idempotent retries, the
per-panel outcome — is the same, and is here once. ARM pacing is not here: every ARM call is paced at
the ARM boundary (`shared.adapters.arm_fleet`), whoever makes it.

One file per noun or verb, as flux2's `cmd/flux/suspend_*.go`:

- `strategy`: the `ChangeStrategy` protocol a kind implements (`plan`, `desired_patch`, `reapply_patch`,
  `check`, ...), and `BaseStrategy` with its defaults;
- `engine`: `FleetChangeEngine`, the facade the triggers and services call, and `EngineSettings`;
- `intake`: starting an operation — validation, selection, overlap locks, `Idempotency-Key`, dry runs;
- `apply` and `verify`: the two queue workers (`ff-fleet-apply`, `ff-fleet-verify`);
- `progress`: stages, halting, the final status, and the sweeper that re-enqueues lost work;
- `rows`: the per-panel state machine's moves (ETag compare-and-swap) and the fan-out of messages;
- `documents`: what an operation's rows add up to, and the documents the API serves;
- `messages`: the queue messages' wire shape;
- `suspend`: the suspend and resume strategies; `requests`: the HTTP requests a pipeline sends;
  `service`: the suspend/resume entry point; `inventory`: the fleet as `GET /api/fleet` shows it;
- `selection`: which panels a target means; `pacing`: the shared token bucket the ARM adapter uses.

Life of an operation (every step idempotent; state lives in the store, never in a process):

1. start (`intake`) — validate, resolve the selection, refuse overlaps (409) with a running operation of
   the same `lock_group`, honour `Idempotency-Key`, write the operation row and one `queued` row per
   panel, enqueue APPLY batches for stage 0. Returns at once (202) or, with a dry run, a plan.
2. APPLY (`apply`) — per panel: claim the row (`queued` → `applying` with a lease, ETag CAS), read the
   Flux configuration, ask `desired_patch`; None → `unchanged`; else PATCH and record `verifying` with the
   time ARM accepted it. One VERIFY message is enqueued per batch, delayed. The LRO is followed through the
   resource's `provisioningState` at verify time rather than polled here: each poll is an ARM read, and
   ARM's read budget (25/s) cannot pay for a status poll and a final GET per write at the write budget's
   pace (10/s) on top of the reads the change itself needs.
3. VERIFY (`verify`) — per panel: read state; an LRO still running waits, a failed one is re-applied
   (bounded); then ask `check`: converged → `succeeded`; waiting → check again later (bounded count →
   `failed`); offline panel → `pending-offline`, re-checked on a slow cadence and re-applied when the
   change it has not received is older than Arc's 48-hour delivery window (or the panel reconnected after
   it); failed → `failed`, and `halt_operation` marks every not-yet-applied panel `skipped` with the cause.
4. After every message (`progress`): when the current stage is settled and reached its threshold, enqueue
   the next stage (duplicates are harmless); when every panel is settled the operation gets its final
   status (`succeeded` | `partially-succeeded` | `failed`). Pending-offline panels keep being tracked and
   the document updates when they converge.

Adding a kind: implement `ChangeStrategy` (subclass `BaseStrategy`), have the composition root
(`shared.container`) hand it to the engine with the others, then call `engine.start(kind=..., ...)`.
See docs/fleet.md.

Nothing is imported here: the Functions host imports this package when it indexes the app.
"""
