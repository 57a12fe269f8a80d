"""Helpers shared by the tests and the benchmarks (one home each):

- ``server``: start a real Streamlit server on loopback, wait for its health with a deadline, stop it;
- ``browser``: Debian's chromium and its launch arguments, waiting for a page to render;
- ``pen``: driving the pen canvas (selectors, digits drawn with the mouse, the component's state);
- ``apptest``: AppTest sessions of the app (``page``, ``open_link``, ``APP``);
- ``jobs``, ``concurrency``, ``figures``, ``reference``, ``machine``: job snapshots and cleanup,
  threads at once, figures for layout tests, results computed a second way, the CPU's name;
- ``pen_canvas_app.py``: a tiny Streamlit app around the pen canvas.
"""
