"""Trigger adapters: parse and validate the trigger payload, call one service, map the result."""
