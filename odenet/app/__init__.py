"""Streamlit glue for the pages: navigation, kept state, links, widgets, the cache helper, access, serving,
plots, the pen-canvas web component. The only layer that imports streamlit.
"""

from odenet.app.serve import quiet_client_gone_race

# every Streamlit server that runs odenet's pages or components (the app, `streamlit run` of a page or a
# test app) logs a closed tab's Starlette race as one line, not a traceback (odenet.app.serve.ClientGoneFilter)
quiet_client_gone_race()
