"""`make bench` (`python -m bench`): the figures of issue #7's benchmark, on the local sandbox.

One module per measurement (arm_writes, diagnosis, cold_start, storm); `python -m bench` runs them,
prints one table and writes JSON. Everything runs on loopback (127.0.0.0/8) and is bounded in
count and time. docs/performance.md publishes the figures and how to reproduce them.
"""
