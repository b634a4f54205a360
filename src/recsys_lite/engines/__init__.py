"""Training engines other than the embedded one: they fit the same models elsewhere and hand
back the same arrays, so artifacts, serving, the worker and evaluation do not change."""
