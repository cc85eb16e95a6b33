"""Work orders over storage: creating and retrying runs, and the audit that proves each settled once."""

if __name__ != "petriflow.workorders":  # a checkout on sys.path would load a second copy
    raise ImportError(f"import petriflow.workorders, not {__name__}: petriflow installs one package (pip install -e .)")
