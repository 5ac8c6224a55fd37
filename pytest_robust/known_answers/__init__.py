"""The self-test: attacks run on small models whose answers are proven (pytest
--robust-selftest, pytest_robust.selftest())."""
