"""The served dashboard's parts (the page itself is built by :mod:`widgets.app`, served by :mod:`widgets.serve`).

==========================  ===================================================================
module                      what
==========================  ===================================================================
``labs``                    the stages behind the lab tabs, built lazily, small by default
``experiment``              ``workbench serve experiment.py``: a researcher's ``experiment()``
``slots``                   ``RunSlots``: the cap on trainings running at once, in the loop itself
``files``                   each session's own folder; messages without server paths
``records``                 the Records tab (save, open, compare)
``relearn``                 the Unlearning tab's Relearn button
``security``                Host allowlist (DNS rebinding) and "page closed" hooks for the server
==========================  ===================================================================
"""
