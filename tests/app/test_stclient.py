"""tests/support/stclient.py against a real Streamlit server (a tiny app on 127.0.0.1, a few
seconds): a tab opens a page, sets a widget, presses a button, reruns a timed fragment, changes
page, sees an exception, and notices when the server goes away; only loopback URLs are accepted."""

import asyncio
import textwrap

import pytest

from tests.support.server import start_server
from tests.support.stclient import StClientError, StTab, widget_state

APP = textwrap.dedent('''
    import streamlit as st

    def home():
        choice = st.selectbox("Colour", ["red", "green", "blue"], key="colour")
        st.markdown(f"picked {choice}")
        if st.button("Boom", key="boom"):
            raise ValueError("boom pressed")

        @st.fragment(run_every=0.5)
        def ticker():
            st.session_state["ticks"] = st.session_state.get("ticks", 0) + 1
            st.markdown(f"ticks {st.session_state['ticks']}")

        ticker()

    def other():
        st.markdown("the other page")

    st.navigation([st.Page(home, title="Home", default=True), st.Page(other, title="Other", url_path="other")]).run()
''')


def test_a_tab_drives_a_real_server(tmp_path):
    script = tmp_path / "tiny.py"
    script.write_text(APP)

    async def visit(url: str) -> dict:
        tab = await StTab.open(url)
        seen = {"open": tab.interactions[-1], "pages": dict(tab.pages), "frags": dict(tab.fragments)}
        colour = tab.find("selectbox", key="colour")
        seen["options"] = colour.options
        seen["set"] = await tab.set(colour, string_value="blue")
        seen["tick"] = await tab.fragment_tick()
        seen["boom"] = await tab.click(tab.find("button", key="boom"))
        seen["no_timer"] = dict(tab.fragments)  # the run stopped before the fragment: its timer stops too
        seen["after"] = await tab.rerun("plain rerun")  # the kept colour is sent again
        seen["timer_back"] = dict(tab.fragments)
        seen["other"] = await tab.goto("other")
        await tab.close()
        return seen

    with start_server(script, deadline_s=60) as server:
        seen = asyncio.run(visit(server.url))
    assert seen["open"].outcome == "ok" and "picked red" in seen["open"].texts
    assert set(seen["pages"]) == {"", "other"}
    assert list(seen["frags"].values()) == [0.5]
    assert seen["options"] == ["red", "green", "blue"]
    assert seen["set"].outcome == "ok" and "picked blue" in seen["set"].texts
    # the repository's config shows a visitor the error's type only (client.showErrorDetails = "type")
    assert len(seen["boom"].exceptions) == 1 and seen["boom"].exceptions[0].startswith("ValueError: ")
    assert seen["tick"].outcome == "ok" and any(t.startswith("ticks ") for t in seen["tick"].texts)
    assert "picked red" not in seen["tick"].texts  # a fragment run draws the fragment only
    assert seen["no_timer"] == {} and list(seen["timer_back"].values()) == [0.5]
    assert "picked blue" in seen["after"].texts and not seen["after"].exceptions
    assert seen["other"].texts == ["the other page"] and seen["other"].page == "other"
    assert all(0 < i.seconds < 10 and i.bytes > 0 for i in seen.values() if hasattr(i, "seconds"))


def test_a_server_that_goes_away_is_a_disconnect(tmp_path):
    script = tmp_path / "tiny.py"
    script.write_text(APP)

    async def visit(server) -> StTab:
        tab = await StTab.open(server.url, timeout=10)
        await asyncio.to_thread(server.stop)
        for _ in range(50):
            if tab.closed_reason is not None:
                break
            await asyncio.sleep(0.1)
        with pytest.raises(StClientError, match="disconnected"):
            await tab.rerun("after the end")
        return tab

    with start_server(script, deadline_s=60) as server:
        tab = asyncio.run(visit(server))
    assert tab.closed_reason == "disconnected"


def test_only_loopback_servers():
    with pytest.raises(ValueError, match="loopback"):
        StTab("http://192.0.2.7:8501")
    assert widget_state("x", int_array_value=[1, 2]).int_array_value.data == [1, 2]
    with pytest.raises(ValueError, match="exactly one"):
        widget_state("x", int_value=1, bool_value=True)
