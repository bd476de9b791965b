"""`toloka-bridge simulate` (and `python -m bridge.simulator`): serve the simulator.

Settings come from `--config FILE.toml` (see `settings.py`), then the flags below
override them; `--faults FILE.toml` replaces the `[faults]` table and `--fault-*`
flags override single fault settings. The token comes from `--token-file`, else the
environment variable TOLOKA_BRIDGE_SIMULATOR_TOKEN, else the demo token `sim-token`;
it is never printed. When ready, the base URL (ending in `/api`) is printed as one
line on stdout. SIGINT or SIGTERM stops the server cleanly (exit 0); bad settings
exit 2 before anything starts.
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

from bridge.errors import ConfigError
from bridge.simulator.runner import DEFAULT_TOKEN, run_simulator
from bridge.simulator.settings import (
    FaultSettings,
    SimulatorSettings,
    load_fault_settings,
    load_settings,
    settings_from_mapping,
)

log = logging.getLogger(__name__)

TOKEN_ENV = "TOLOKA_BRIDGE_SIMULATOR_TOKEN"
_FAULT_PREFIX = "sim_fault_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to `parser` (all dests start with `sim_`)."""
    add = parser.add_argument
    add("--config", dest="sim_config", type=Path, help="settings TOML file")
    add("--host", dest="sim_host", help="address to bind (default 127.0.0.1)")
    add("--port", dest="sim_port", type=int, help="port (default 8080; 0 = any free)")
    add("--seed", dest="sim_seed", type=int, help="RNG seed (default 0)")
    add("--rate", dest="sim_rate", type=float, help="new operations per second")
    add("--truth", dest="sim_truth", help="file for the ground truth (JSON lines)")
    add("--history", dest="sim_history", type=int, help="finished ops to pre-create")
    add("--running", dest="sim_running", type=int, help="RUNNING ops to pre-create")
    add("--max-limit", dest="sim_max_limit", type=int, help="largest search limit")
    add("--token-file", dest="sim_token_file", type=Path, help="file holding the token")
    add("--faults", dest="sim_faults", type=Path, help="TOML file of fault settings")
    for name, kind in _fault_fields():
        flag = "--fault-" + name.replace("_", "-")
        add(flag, dest=_FAULT_PREFIX + name, type=kind, help=f"faults.{name}")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; return the process exit code."""
    try:
        settings = settings_from_args(args)
        token = read_token(args.sim_token_file)
    except ConfigError as error:
        print(f"simulator: {error}", file=sys.stderr)
        return 2

    try:
        asyncio.run(_serve(settings, token))
    except OSError as error:
        log.error("simulator could not start: %s", error)
        return 1
    except KeyboardInterrupt:
        log.info("simulator interrupted before it was ready")
    return 0


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """The config file's settings with the command-line overrides applied."""
    settings = (
        load_settings(args.sim_config) if args.sim_config else SimulatorSettings()
    )
    data: dict[str, Any] = msgspec.to_builtins(settings)
    overrides = {
        ("server", "host"): args.sim_host,
        ("server", "port"): args.sim_port,
        ("server", "max_limit"): args.sim_max_limit,
        ("load", "rate_per_second"): args.sim_rate,
        ("load", "history"): args.sim_history,
        ("load", "running"): args.sim_running,
    }
    for (table, key), value in overrides.items():
        if value is not None:
            data[table][key] = value
    if args.sim_seed is not None:
        data["seed"] = args.sim_seed
    if args.sim_truth is not None:
        data["truth_path"] = args.sim_truth
    if args.sim_faults is not None:
        data["faults"] = msgspec.to_builtins(load_fault_settings(args.sim_faults))
    for name, _ in _fault_fields():
        value = getattr(args, _FAULT_PREFIX + name)
        if value is not None:
            data["faults"][name] = value
    return settings_from_mapping(data)


def read_token(token_file: Path | None) -> str:
    """The API token from a file, the environment, or the demo default."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(
            f"cannot read token file {str(token_file)!r}: {error}"
        ) from None
    if not token:
        raise ConfigError(f"token file {str(token_file)!r} is empty")
    return token


async def _serve(settings: SimulatorSettings, token: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    port = settings.server.port
    async with run_simulator(settings, token=token, port=port) as simulator:
        print(simulator.base_url, flush=True)
        await stop.wait()
        log.info("simulator stopping")

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signal_number)


def _fault_fields() -> list[tuple[str, type]]:
    kinds = {"float": float, "int": int, "str": str}
    fields = msgspec.structs.fields(FaultSettings)
    return [(f.name, kinds.get(_base_type_name(f.type), str)) for f in fields]


def _base_type_name(annotation: object) -> str:
    """`float` for `Annotated[float, ...]`, `str` for a Literal of strings, etc."""
    origin = getattr(annotation, "__origin__", annotation)
    return getattr(origin, "__name__", "str")
