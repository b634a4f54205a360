"""Shoppers' rights: export what the shop holds about one shopper, erase them everywhere
(store, files, artifacts, what the models learned, every API process), and prove it.

``service.py`` is the one interface the API and the CLI use; the other modules are its parts.
"""
