"""The ``activities`` command's helpers, internal to the framework.

Its arguments (``arguments``), finding the user's modules (``usermodules``) and
``activities invoke`` (``invoke``).
"""
