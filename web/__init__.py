"""The web layer: a JSON API and a search page over ``search`` (``create_app`` in web.app)."""
