"""HTTP routes: ``api`` (JSON) and ``pages`` (HTML)."""
