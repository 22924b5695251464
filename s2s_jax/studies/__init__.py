"""Studies: many runs of one experiment, and their results.

grid.py       the axes and points of a sweep
sweep.py      every grid point for every seed, as resumable runs (`python -m s2s_jax.studies.sweep`)
jobs.py       the sweep's runs as subprocesses, --parallel at a time, stopped together
multiseed.py  K seeds of one run trained at once by one vmapped step
results.py    results.csv / results.md and plots over seeds
"""
