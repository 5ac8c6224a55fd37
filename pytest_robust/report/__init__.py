"""Reports of what was measured. Pure formatting: no pytest, no torch."""
