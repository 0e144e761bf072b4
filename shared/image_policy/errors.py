"""The one error this package raises for specs that Flux itself refuses.

Flux marks an ImagePolicy `Stalled` with reason `InvalidPolicy` (and never retries) when the
policy cannot be built: an unparsable semver range, an unknown order, no policy choice at all, or a
`filterTags.pattern` that Go's regexp package rejects. Callers turn this into a user-facing verdict,
so the message carries Flux's own wording wherever the reference gives it.
"""

from __future__ import annotations


class InvalidPolicy(ValueError):
    """A policy (or exclusion pattern) that Flux rejects; the message is Flux's reason."""
