"""The poll loop: four scans per cycle find every change without one GET per operation.

Each cycle:

1. discover: operations by `submitted`, from the discover watermark minus the lag;
2. refresh: every PENDING, then every RUNNING operation, listed by status;
3. sweep: operations by `finished`, from the sweep watermark minus the lag, which
   catches those that started and finished between two polls;
4. lookup: one GET each for tracked operations that were in neither list nor the sweep.

Requests per cycle grow with new operations and unfinished operations divided by the
page size, not with the number of operations tracked. Scans read up to now and re-read
`lag` seconds behind their watermarks; ids already tracked make the re-reads free of
duplicates, so a late-visible row is caught without delaying rows that are on time.

Finished operations leave the state once both watermarks, minus the lag, have passed
them: no scan can return them after that.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from bridge import __version__
from bridge.config import Config, start_moment
from bridge.cycle import Cycle, CycleObserver, CycleOptions, CycleTally
from bridge.errors import BridgeError, PayloadError, PublishError, SourceError
from bridge.events import EventSource, ScanName
from bridge.operation import PENDING, RUNNING, DecodedPage
from bridge.publisher import Publisher
from bridge.scan import TimeField, scan_by_status, scan_by_time
from bridge.state import BridgeState, Cursor, StateKeys, restore_state
from bridge.toloka import TolokaClient

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
MAX_BACKOFF_SECONDS = 30.0


class Poller:
    """Runs poll cycles until asked to stop; owns nothing but the loop."""

    def __init__(
        self,
        config: Config,
        state: BridgeState,
        client: TolokaClient,
        publisher: Publisher,
        observer: "PollObserver",
        clock: Clock,
    ) -> None:
        self._config = config
        self._state = state
        self._client = client
        self._publisher = publisher
        self._observer = observer
        self._clock = clock
        self._source = EventSource(
            environment=config.toloka.environment,
            account=config.toloka.account,
            bridge_version=__version__,
        )
        self._keys = StateKeys(config.toloka.environment, config.toloka.account)
        self._outcome_unknown = False

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll every interval; retriable failures back off, fatal ones propagate."""
        failures = 0
        while not stopping.is_set():
            started = asyncio.get_running_loop().time()
            try:
                await self.run_cycle()
                failures = 0
                delay = self._config.poll.interval_seconds
            except BridgeError as error:
                if not error.retriable:
                    raise
                failures += 1
                delay = self._backoff(failures)
                logger.warning(
                    "poll cycle failed (attempt %d), next in %.1fs: %s",
                    failures,
                    delay,
                    error,
                )
            elapsed = asyncio.get_running_loop().time() - started
            await wait_or_stop(stopping, delay - elapsed if failures == 0 else delay)
            self._observer.heartbeat()

    async def run_cycle(self) -> CycleTally:
        """One cycle: scan, detect, publish, then advance the cursor."""
        began = self._clock()
        await self._reload_if_unsure(began)
        cursor = self._state.cursor or self._cold_start_cursor(began)
        options = self._cycle_options(cursor)
        cycle = Cycle(
            self._state, options, self._publisher, self._observer, self._clock
        )
        try:
            await self._complete(cycle, cursor)
        except BridgeError as error:
            self._outcome_unknown |= isinstance(error, PublishError)
            self._report(cycle.tally, began, error)
            raise

        self._report(cycle.tally, began, None)
        logger.debug("poll cycle done: %s", cycle.tally)
        return cycle.tally

    async def _reload_if_unsure(self, began: datetime) -> None:
        """After a failed publish, read back what Kafka kept before publishing again.

        A publish that failed may have landed all the same: a commit the broker
        received but did not answer in time is applied when it wakes up. Publishing
        from memory would then repeat the batch. Starting the producer first settles
        that transaction (the broker completes or aborts it before it admits the new
        producer), so the state read back is exactly what consumers see.
        """
        if not self._outcome_unknown:
            return

        try:
            await self._publisher.start()
            self._state = await restore_state(self._config.kafka, self._keys)
        except BridgeError as error:
            self._report(CycleTally(), began, error)
            raise
        self._outcome_unknown = False
        logger.info(
            "state read again after a failed publish: %d tracked operations",
            len(self._state.tracked),
        )

    async def _complete(self, cycle: Cycle, cursor: Cursor) -> None:
        """Scan everything, then land the rest with the new cursor and tombstones."""
        try:
            cursor = await self._scan_all(cycle, cursor)
        except SourceError:
            await cycle.flush()
            raise

        cycle.forget(self._forgettable(cycle, cursor))
        await cycle.flush(cursor)

    async def _scan_all(self, cycle: Cycle, cursor: Cursor) -> Cursor:
        lag = timedelta(seconds=self._config.poll.lag_seconds)
        discover_from = cursor.discover_watermark
        discovered = await self._scan_time(cycle, "submitted", discover_from, lag)
        listed = await self._refresh(cycle)
        swept = await self._scan_time(cycle, "finished", cursor.sweep_watermark, lag)
        await self._look_up_missing(cycle, listed)
        return Cursor(
            discover_watermark=_latest(cursor.discover_watermark, discovered),
            sweep_watermark=_latest(cursor.sweep_watermark, swept),
            initial_load_done=True,
        )

    async def _scan_time(
        self,
        cycle: Cycle,
        field: TimeField,
        watermark: datetime | None,
        lag: timedelta,
    ) -> datetime | None:
        """Read by `field` from the watermark minus the lag; return the newest seen."""
        since = None if watermark is None else watermark - lag
        seen_by: ScanName = "discover" if field == "submitted" else "sweep"
        newest: datetime | None = None
        async for page in scan_by_time(self._client, field, since, self._page_size):
            self._take(cycle, page, seen_by)
            stamps = [getattr(item, field) for item in page.observations]
            newest = _latest(newest, max(filter(None, stamps), default=None))
            await cycle.flush_if_full()
        return newest

    async def _refresh(self, cycle: Cycle) -> set[str]:
        """List every unfinished operation by status; return the ids seen."""
        listed: set[str] = set()
        for status in (PENDING, RUNNING):
            async for page in scan_by_status(self._client, status, self._page_size):
                self._take(cycle, page, "refresh")
                listed.update(item.operation_id for item in page.observations)
                await cycle.flush_if_full()
        return listed

    async def _look_up_missing(self, cycle: Cycle, listed: set[str]) -> None:
        """GET each tracked unfinished operation that no scan returned this cycle."""
        missing = [i for i in cycle.unfinished_ids() if i not in listed]
        limit = self._config.poll.max_lookups_per_cycle
        if len(missing) > limit:
            logger.info("%d operations to look up, %d this cycle", len(missing), limit)

        vanished = []
        for operation_id in missing[:limit]:
            self._observer.heartbeat()
            try:
                observation = await self._client.get(operation_id)
            except PayloadError as error:
                cycle.reject(error)
                continue
            if observation is None:
                vanished.append(operation_id)
                continue
            cycle.observe(observation, "lookup", self._clock())
            await cycle.flush_if_full()

        if vanished:
            logger.warning("operations no longer exist in Toloka: %s", vanished)
            self._observer.operations_vanished(len(vanished))
            cycle.forget(vanished)

    def _take(self, cycle: Cycle, page: DecodedPage, seen_by: ScanName) -> None:
        self._observer.heartbeat()
        observed_at = self._clock()
        for error in page.rejected:
            cycle.reject(error)
        for observation in page.observations:
            cycle.observe(observation, seen_by, observed_at)

    def _forgettable(self, cycle: Cycle, cursor: Cursor) -> list[str]:
        """Finished operations that neither time scan can return any more."""
        lag = timedelta(seconds=self._config.poll.lag_seconds)
        if cursor.discover_watermark is None or cursor.sweep_watermark is None:
            return []

        discover_floor = cursor.discover_watermark - lag
        sweep_floor = cursor.sweep_watermark - lag
        return [
            operation_id
            for operation_id, tracked in self._state.tracked.items()
            if tracked.is_terminal
            and cycle.tracked(operation_id) == tracked
            and tracked.submitted < discover_floor
            and (tracked.finished or tracked.submitted) < sweep_floor
        ]

    def _cold_start_cursor(self, now: datetime) -> Cursor:
        start = start_moment(self._config, now)
        logger.info(
            "cold start: reading operations from %s",
            "the beginning" if start is None else start.isoformat(),
        )
        return Cursor(discover_watermark=start, sweep_watermark=start)

    def _cycle_options(self, cursor: Cursor) -> CycleOptions:
        return CycleOptions(
            source=self._source,
            keys=self._keys,
            initial_load=not cursor.initial_load_done,
            progress_events=self._config.poll.progress_events,
            max_operation_bytes=self._config.kafka.max_operation_bytes,
            max_events_per_batch=self._config.poll.max_events_per_transaction,
        )

    @property
    def _page_size(self) -> int:
        return self._config.toloka.page_size

    def _backoff(self, failures: int) -> float:
        base = max(self._config.poll.interval_seconds, 1.0)
        return float(min(base * 2 ** (failures - 1), MAX_BACKOFF_SECONDS))

    def _report(
        self, tally: CycleTally, began: datetime, error: BridgeError | None
    ) -> None:
        seconds = (self._clock() - began).total_seconds()
        self._observer.cycle_finished(tally, seconds, error)


class PollObserver(CycleObserver, Protocol):
    """What the metrics module learns from the loop."""

    def cycle_finished(
        self, tally: CycleTally, seconds: float, error: BridgeError | None
    ) -> None: ...

    def operations_vanished(self, count: int) -> None: ...

    def heartbeat(self) -> None:
        """The loop is alive: called after every page and every wait."""


def _latest(first: datetime | None, second: datetime | None) -> datetime | None:
    candidates = [moment for moment in (first, second) if moment is not None]
    return max(candidates, default=None)


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake up at once when asked to stop."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()
