"""flowrun: LLM-agent workflows as YAML graphs, inside an envelope enforced outside the model."""

__version__ = "0.1.0"


def started_as_flowrun() -> bool:
    """This interpreter was started to run one flowrun command: the `flowrun` script or
    `python -m runner.cli`, not a program (a test runner, a library user) that calls the
    command's code in its own process and must outlive it."""
    import os
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "runner.cli":
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") == "flowrun"
