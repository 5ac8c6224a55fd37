"""Properties of a model that are not an attack: input-gradient magnitudes and the
gradient-masking checks (flags.py has no torch; gradients.py, sanity.py (the cheap flags)
and diagnosis.py (the full diagnosis) do)."""
