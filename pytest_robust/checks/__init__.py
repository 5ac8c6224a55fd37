"""Properties of a model that are not an attack: input-gradient magnitudes and the
gradient-masking diagnosis (flags.py has no torch; gradients.py and sanity.py do)."""
