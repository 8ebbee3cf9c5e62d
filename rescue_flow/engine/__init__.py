"""The engine: one request, from what the host shows to its Result.

- :mod:`.runner`: records, decides, runs the flow, reports.
- :mod:`.states`: the instance state machine and what a request means in
  each state.
- :mod:`.observe`: reads the instance's state off the host.
- :mod:`.scheduler`: per-instance order, a bounded number of instances at once.
- :mod:`.locks`: the per-instance file lock.
- :mod:`.quarantine`: instances a failed revert left for an operator.
- :mod:`.progress`: step events as a flow runs.
- :mod:`.logs`: oslo.log setup and the request named on every log line.
"""
