"""Streamlit glue for the pages: navigation, kept state, links, widgets, the cache helper, access, serving,
plots, the pen-canvas web component. The only layer that imports streamlit.
"""
