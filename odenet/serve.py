"""Start the app with its heavy work done before the first visitor arrives.

    python -m odenet.serve [streamlit options]      # what `make run` does

``streamlit run app.py`` imports torch, pandas and plotly, reads MNIST and loads the shipped
models during the first page visit after a server start, which made that visit 1-2 s slower
than any later one.  Streamlit runs page scripts in its own process, so importing those modules
here first, and filling the process-wide caches (MNIST, the shipped models, the model list)
before the server starts listening, moves that cost out of the first visit; the server answers
1-2 s later instead.  Nothing else changes: options after the module name go to
``streamlit run`` unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"


def warm_imports() -> None:
    """Import what every page needs (about 1.5 s on a 2-core machine, most of it torch)."""
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import torch  # noqa: F401

    from . import analysis, checkpoints, plots, preprocess, problems, ui  # noqa: F401


def warm_caches() -> None:
    """Read MNIST and every shipped model into the caches the pages use; failures are left to
    the pages, which report them (a missing MNIST is an actionable message there)."""
    try:
        from .checkpoints import pretrained_models
        from .data import load_mnist
        from .runs import available_models
        from .ui import cached_model

        load_mnist()
        for path in pretrained_models().values():
            cached_model(path)
        available_models()  # reads every checkpoint's summary once (cached per file version)
    except Exception as exc:  # noqa: BLE001 - warm-up is best effort; the page shows the real error
        print(f"odenet: warm-up skipped ({type(exc).__name__}: {exc}); pages load on first use", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    from .access import shared_override
    from .errors import OdenetError

    try:
        shared_override()  # a typo in ODENET_SHARED stops the launch, not the first visit
    except OdenetError as exc:
        sys.exit(f"odenet: {exc}")
    warm_imports()
    warm_caches()  # ~1-2 s more before the server answers, so its first visitor does not share the cores with it
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
