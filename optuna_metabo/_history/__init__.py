"""Reading and matching prior studies: opening their storages read-only, reading their trials,
lining their parameters and metrics up with the target's, and encoding them as the core's
rows. It imports the numeric core's types and the vocabulary, never the sampler."""
