"""odenet: the Neural ODE lab.  `streamlit run app.py` (or `make run`)."""

import streamlit as st

from odenet.app.access import presenter_token
from odenet.app.nav import PAGES
from odenet.app.room import mark_server_start
from odenet.app.room_ui import room_sidebar
from odenet.app.visitor import server_is_public
from odenet.errors import OdenetError

st.set_page_config(page_title="odenet: Neural ODE lab", page_icon="🌀", layout="wide")
mark_server_start()  # once per process: runs that exist now are never New class's to delete

try:
    shared = server_is_public()
except OdenetError as exc:  # e.g. ODENET_SHARED=maybe: say which setting is wrong instead of a traceback
    st.error(str(exc))
    st.stop()
if shared:
    presenter_token()  # generated (unless ODENET_PRESENTER_TOKEN is set) and printed once to the terminal
    room_sidebar()  # the address (and QR code) the room opens to join
st.navigation([st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path or None, default=not p.url_path)
               for p in PAGES]).run()
