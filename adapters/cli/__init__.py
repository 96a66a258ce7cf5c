"""The `tally` command line (main.py).

Every `tally` process starts here, before pydantic builds its first model: pydantic then
looks for plugins of its own by reading the entry points of every installed distribution
(about 60 ms of `tally serve`'s start, TARGETS.md P9), and Tally installs none. So plugin
discovery is off unless the environment says otherwise: set PYDANTIC_DISABLE_PLUGINS to ""
(look for them all) or to a list of names to skip, as pydantic documents.
"""

import os

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
