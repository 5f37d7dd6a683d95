"""The commands: main.py (argument parsing; check, run, plugins, tap, top, plot), top.py
(the terminal view), plot.py (charts from recorded figures), docs.py (plugin help and
docs/plugins.md, from the option declarations).

The top of the import graph: may import anything in pipeline; nothing imports it (but
__main__). This is where a running graph and the api are wired together.
"""
