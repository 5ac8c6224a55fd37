"""Where the engine keeps what it may reuse: the in-session cache of clean passes and
sanity flags, results reused across runs (--robust-cache) and remembered counterexamples."""
