"""The pieces every emulated service shares: clock, TLS, tokens, faults, events, the service base."""
