"""toloka-bridge: Toloka's asynchronous operations as a Kafka event stream."""

__version__ = "0.1.0"
