"""Plotly figures drawn by chromium itself (no server): what only a browser's layout can show."""

import plotly.offline

from tests.support.figures import animated_figures

BOXES = """() => Object.fromEntries(Object.entries({plot: '.nsewdrag', slider: '.slider-container',
    buttons: '.updatemenu-container', title: '.gtitle'}).map(([k, s]) => {
    const b = document.querySelector(s).getBoundingClientRect();
    return [k, [b.top, b.bottom, b.left, b.right]]; }))"""


def test_play_controls_do_not_overlap_the_plot_in_chromium(browser):
    """Measured: the slider's tick labels used to reach 22 px into the plot area."""
    js = plotly.offline.get_plotlyjs()
    pg = browser.new_page(viewport={"width": 900, "height": 800})
    for width in (520, 700, 1100):
        for name, fig in animated_figures().items():
            pg.set_content(f"<html><body><script>{js}</script><div id=g style='width:{width}px'></div><script>"
                           f"var f={fig.to_json()};Plotly.newPlot('g',f.data,f.layout);</script></body></html>")
            pg.wait_for_function("() => ['.nsewdrag', '.slider-container', '.updatemenu-container', "
                                 "'.gtitle'].every(s => document.querySelector(s))")
            box = pg.evaluate(BOXES)
            assert box["slider"][1] <= box["plot"][0], (name, width, box)
            assert box["buttons"][1] <= box["slider"][0] + 1, (name, width, box)  # the buttons above the slider
            assert box["title"][1] <= min(box["slider"][0], box["buttons"][0]), (name, width, box)
    pg.close()
