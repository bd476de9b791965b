"""The reliability and security suite: the bridge attacked the way production will.

Each scenario module runs real parts (the simulator, the bridge as a process, real Kafka
brokers), breaks something on purpose, and compares what a read_committed consumer finds
on the events topic with the simulator's ground truth. A scenario returns a
`ScenarioResult`: the transition counts of that comparison plus named checks of the
behaviour the README promises (metrics, probes, log lines, exit codes).

`tests/test_chaos.py` runs every scenario at the CI scale; `dev/chaos.py` runs them at
the long scale and writes the README's results table (see `runner.py`).
"""
