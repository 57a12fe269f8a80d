"""odenet: the Neural ODE lab.  `streamlit run app.py` (or `make run`)."""

import streamlit as st

from odenet.access import presenter_token
from odenet.ui import PAGES, server_is_public

st.set_page_config(page_title="odenet: Neural ODE lab", page_icon="🌀", layout="wide")

if server_is_public():
    presenter_token()  # generated (unless ODENET_PRESENTER_TOKEN is set) and printed once to the terminal
st.navigation([st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path or None, default=not p.url_path)
               for p in PAGES]).run()
