"""The `toloka-bridge` command.

    toloka-bridge run           poll Toloka and publish events until SIGTERM/SIGINT
    toloka-bridge check-config  validate the configuration and print it, secrets hidden
    toloka-bridge schema        print the event JSON Schema (or the AsyncAPI document)
    toloka-bridge tail          show the events topic live, one readable line per event
    toloka-bridge simulate      serve a Toloka-compatible API for demos and tests

Exit codes: 0 done, 1 unexpected error, 2 bad configuration or topics, 3 Toloka
refused the credentials, 4 fenced by a newer instance, 5 Kafka unreachable at start.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from bridge import __version__
from bridge.config import Config, load_config, redacted
from bridge.contract import asyncapi_document
from bridge.errors import BridgeError, ConfigError
from bridge.events import event_schema
from bridge.logs import configure_logging

logger = logging.getLogger(__name__)

CONFIG_ENV = "TOLOKA_BRIDGE_CONFIG"


def main(argv: Sequence[str] | None = None) -> int:
    # As PID 1 in a container a signal with the default action is ignored; until the
    # event loop installs its handlers, SIGTERM interrupts like Ctrl-C instead.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["simulate"]:
        return _simulate(argv[1:])

    parser = _parser()
    args = parser.parse_args(argv)
    command = getattr(args, "command", None)
    if command is None:
        parser.print_help()
        return 2

    try:
        return int(command(args))
    except ConfigError as error:
        print(f"toloka-bridge: configuration error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("toloka-bridge: stopped before it started", file=sys.stderr)
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toloka-bridge",
        description="Toloka's asynchronous operations as a Kafka event stream.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="poll Toloka and publish every change")
    _add_config_argument(run)
    run.set_defaults(command=_run)

    check = commands.add_parser("check-config", help="validate and print the config")
    _add_config_argument(check)
    check.set_defaults(command=_check_config)

    schema = commands.add_parser("schema", help="print the event JSON Schema")
    schema.add_argument("--asyncapi", action="store_true", help="print AsyncAPI")
    schema.set_defaults(command=_schema)

    tail = commands.add_parser("tail", help="show events as they arrive")
    _add_config_argument(tail)
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument(
        "--max-events", type=int, default=0, help="stop after N (0: never)"
    )
    tail.set_defaults(command=_tail)

    commands.add_parser("simulate", help="serve a Toloka-compatible API (see --help)")
    return parser


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV),
        help=f"TOML file (default: ${CONFIG_ENV}); the environment overrides it",
    )


def _simulate(argv: list[str]) -> int:
    """Imported on demand, so `run` never depends on the simulator's code."""
    from bridge.simulator import cli as simulator_cli

    parser = argparse.ArgumentParser(prog="toloka-bridge simulate")
    simulator_cli.add_arguments(parser)
    return simulator_cli.run(parser.parse_args(argv))


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(json.dumps(redacted(config), indent=2, sort_keys=False))
    return 0


def _schema(args: argparse.Namespace) -> int:
    document = asyncapi_document() if args.asyncapi else event_schema()
    print(json.dumps(document, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
    configure_logging(config.log, secrets=_secrets(config))
    logger.info(
        "toloka-bridge %s starting: %s",
        __version__,
        json.dumps(_summary(config), sort_keys=True),
    )
    return asyncio.run(_run_until_signalled(config))


async def _run_until_signalled(config: Config) -> int:
    from bridge.service import run_bridge

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    try:
        await run_bridge(config, stopping)
    except BridgeError as error:
        logger.error("stopping: %s", error)
        return error.exit_code
    return 0


def _tail(args: argparse.Namespace) -> int:
    from bridge.tail import tail_events

    config = _load(args)
    configure_logging(config.log, secrets=_secrets(config))
    return asyncio.run(tail_events(config, args.from_beginning, args.max_events))


def _secrets(config: Config) -> list[str]:
    found = [config.toloka.api_key, config.kafka.sasl_password]
    return [secret.reveal() for secret in found if secret is not None]


def _summary(config: Config) -> dict[str, object]:
    """The settings worth one log line at start; no secrets, no credentials."""
    return {
        "toloka": config.toloka.base_url,
        "environment": config.toloka.environment,
        "account": config.toloka.account,
        "kafka": config.kafka.bootstrap_servers,
        "events_topic": config.kafka.events_topic,
        "state_topic": config.kafka.state_topic,
        "transactions": config.kafka.transactions,
        "interval_seconds": config.poll.interval_seconds,
        "lag_seconds": config.poll.lag_seconds,
        "start": config.poll.start,
    }


if __name__ == "__main__":
    sys.exit(main())
