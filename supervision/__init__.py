"""OTP-style supervision for Thespian actors: child specs, restart strategies
and intensity, crash-as-exit, passivation and die-with-parent links.

Imports only the standard library, thespian and structlog, so any actor tree
can reuse it.
"""

if __name__ != "petriflow.supervision":  # a checkout on sys.path would load a second copy
    raise ImportError(
        f"import petriflow.supervision, not {__name__}: petriflow installs one package (pip install -e .)"
    )
