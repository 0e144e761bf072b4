"""The simulated fleet: the panels (Arc-connected clusters), their Flux configurations and their agents.

ARM (`lab.arm`) is the wire layer over this model: it stores the *desired* state that callers write
through `fluxConfigurations` and shows the *reported* state. The agents (`lab.fleet.agents`) are what
turns one into the other, the way the Arc config agent and Flux do on a real panel: they pick up
configuration changes when the panel is online, fetch from the lab's Git server for real, and report
what happened. Keeping the model apart from the HTTP layer lets the agent state machine be tested
without a server.
"""
