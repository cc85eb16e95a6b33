"""The pure model of petriflow: workflows, entity state machines, routing,
executors and messages. Nothing here imports Thespian or does I/O, so the
whole model is testable without an actor system."""

if __name__ != "petriflow.engine":  # a checkout on sys.path would load a second copy
    raise ImportError(f"import petriflow.engine, not {__name__}: petriflow installs one package (pip install -e .)")
