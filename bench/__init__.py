"""The benchmark harness: the bridge against per-operation polling, measured together.

`python -m bench --profile short|long` starts the simulator and each bridge under test
as separate processes against a real Kafka broker, measures API requests, catch-up
throughput, detection latency, memory and scrape cost, and writes
`bench/results/latest.{md,json}` and PNG charts. See `bench/README.md`.
"""
