"""Training scripts for the small learned parts that ship with crossfind (run offline, by hand)."""
