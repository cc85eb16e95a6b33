"""OTP-style supervision for Thespian actors: child specs, restart strategies
and intensity, crash-as-exit, passivation and die-with-parent links.

Imports only the standard library, thespian and structlog, so any actor tree
can reuse it.
"""
