"""What each operation type carries: ids, `parameters`, `details` and the item log.

Everything here is a pure function of a per-operation `content_seed`, so the same
seed always gives the same parameters, details and log, no matter when they are
rendered. Shapes follow toloka-kit 1.2.3 and Toloka's API reference; unknown types
carry no parameters and no details, as an operation type added later would.
"""

import random
import uuid

import msgspec

from bridge.simulator.model import FAIL, PENDING, SUCCESS

BATCH_TYPES = frozenset(
    {"TASK.BATCH_CREATE", "TASK_SUITE.BATCH_CREATE", "USER_BONUS.BATCH_CREATE"}
)
_POOL_TYPES = frozenset(
    {"POOL.OPEN", "POOL.CLOSE", "POOL.ARCHIVE", "POOL.CLONE", "SOLUTION.AGGREGATE"}
)
_TRAINING_TYPES = frozenset(
    {"TRAINING.OPEN", "TRAINING.CLOSE", "TRAINING.ARCHIVE", "TRAINING.CLONE"}
)
_ANALYTICS_NAMES = (
    "submitted_assignments_count",
    "approved_assignments_count",
    "rejected_assignments_count",
    "completion_percentage",
    "active_workers_by_filter_count",
    "real_tasks_count",
    "visible_tasks_count",
)
_LOG_SALT = 0x5EED_106
_MASK64 = (1 << 64) - 1


class Draws:
    """A tiny seeded generator (SplitMix64): cheap to create, one per operation.

    `random.Random(seed)` costs microseconds to seed, which adds up over 100,000
    pre-populated operations; this costs nothing to create and is deterministic.
    """

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def next64(self) -> int:
        """The next 64 random bits."""
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        """A float in [0, 1)."""
        return self.next64() / 18446744073709551616.0

    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + self.next64() % (high - low + 1)

    def pick(self, choices: tuple[str, ...], count: int) -> list[str]:
        """`count` distinct items of `choices`, in random order."""
        pool = list(choices)
        for position in range(count):
            other = self.randint(position, len(pool) - 1)
            pool[position], pool[other] = pool[other], pool[position]
        return pool[:count]


class PoolParameters(msgspec.Struct):
    pool_id: str


class TrainingParameters(msgspec.Struct):
    training_id: str


class ProjectParameters(msgspec.Struct):
    project_id: str


class BatchParameters(msgspec.Struct):
    skip_invalid_items: bool
    allow_defaults: bool
    open_pool: bool


class BonusParameters(msgspec.Struct):
    skip_invalid_items: bool


class AnalyticsRequest(msgspec.Struct):
    subject: str
    subject_id: str
    name: str


class AnalyticsParameters(msgspec.Struct):
    value: list[AnalyticsRequest]


class BatchCounts(msgspec.Struct):
    total_count: int
    valid_count: int
    not_valid_count: int
    success_count: int
    failed_count: int


class AnalyticsResult(msgspec.Struct):
    request: AnalyticsRequest
    result: int
    finished: str


class AnalyticsDetails(msgspec.Struct):
    value: list[AnalyticsResult]


class TaskInput(msgspec.Struct):
    pool_id: str
    input_values: dict[str, str]
    client_uuid: str = msgspec.field(name="__client_uuid")


class BonusInput(msgspec.Struct):
    user_id: str
    amount: str
    public_title: dict[str, str]
    client_uuid: str = msgspec.field(name="__client_uuid")


class FieldError(msgspec.Struct):
    code: str
    message: str


class LogItem(msgspec.Struct):
    """One entry of `GET /v1/operations/{id}/log` (toloka-kit `OperationLogItem`)."""

    type: str
    success: bool
    input: TaskInput | BonusInput
    output: dict[str, str] | dict[str, FieldError]


_encoder = msgspec.json.Encoder()


def new_operation_id(rng: random.Random, uuid_ratio: float) -> str:
    """A random id: a UUID or 24 hex digits; neither kind sorts by time."""
    if rng.random() < uuid_ratio:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return f"{rng.getrandbits(96):024x}"


def parameters_for(op_type: str, content_seed: int) -> msgspec.Raw | None:
    """The operation's `parameters` object, or None for types that have none."""
    content = _parameters(op_type, Draws(content_seed))
    return None if content is None else msgspec.Raw(_encoder.encode(content))


def details_for(
    op_type: str, content_seed: int, status: str, finished: str
) -> msgspec.Raw | None:
    """The `details` a completed operation carries, or None when it has none."""
    content = _details(op_type, content_seed, status, finished)
    return None if content is None else msgspec.Raw(_encoder.encode(content))


def log_for(
    op_type: str, content_seed: int, status: str, progress: int | None
) -> bytes:
    """The item log as a JSON array; entries appear as the operation progresses."""
    if op_type not in BATCH_TYPES or status == PENDING:
        return b"[]"

    counts = batch_counts(content_seed, FAIL if status == FAIL else SUCCESS)
    items = _log_items(op_type, content_seed, counts, status == FAIL)
    if status not in (SUCCESS, FAIL):
        items = items[: len(items) * (progress or 0) // 100]
    return _encoder.encode(items)


def batch_counts(content_seed: int, status: str) -> BatchCounts:
    """The counts a batch create reports when it ends with `status`."""
    rng = Draws(content_seed)
    skip_invalid = rng.random() < 0.5
    rng.random()
    rng.random()
    total = min(5000, int(8 / (1.0 - rng.random()) ** (1 / 1.3)))
    invalid = rng.randint(1, max(1, total // 5)) if rng.random() < 0.3 else 0

    if status == FAIL:
        not_valid = min(total, max(1, invalid))
        return BatchCounts(total, total - not_valid, not_valid, 0, total)
    not_valid = invalid if skip_invalid else 0
    valid = total - not_valid
    return BatchCounts(total, valid, not_valid, valid, 0)


def _parameters(op_type: str, rng: Draws) -> msgspec.Struct | None:
    if op_type in _POOL_TYPES:
        return PoolParameters(pool_id=_numeric_id(rng))
    if op_type in _TRAINING_TYPES:
        return TrainingParameters(training_id=_numeric_id(rng))
    if op_type == "PROJECT.ARCHIVE":
        return ProjectParameters(project_id=_numeric_id(rng))
    if op_type in ("TASK.BATCH_CREATE", "TASK_SUITE.BATCH_CREATE"):
        flags = (rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.3)
        return BatchParameters(*flags)
    if op_type == "USER_BONUS.BATCH_CREATE":
        return BonusParameters(skip_invalid_items=rng.random() < 0.5)
    if op_type == "ANALYTICS":
        return AnalyticsParameters(value=_analytics_requests(rng))
    return None


def _details(
    op_type: str, content_seed: int, status: str, finished: str
) -> msgspec.Struct | None:
    if op_type in BATCH_TYPES:
        return batch_counts(content_seed, status)
    if status != SUCCESS:
        return None

    rng = Draws(content_seed ^ 0xC10E)
    if op_type == "POOL.CLONE":
        return PoolParameters(pool_id=_numeric_id(rng))
    if op_type == "TRAINING.CLONE":
        return TrainingParameters(training_id=_numeric_id(rng))
    if op_type == "ANALYTICS":
        requests = _analytics_requests(Draws(content_seed))
        results = [_analytics_result(request, rng, finished) for request in requests]
        return AnalyticsDetails(value=results)
    return None


def _analytics_requests(rng: Draws) -> list[AnalyticsRequest]:
    pool_id = _numeric_id(rng)
    names = rng.pick(_ANALYTICS_NAMES, rng.randint(1, 3))
    return [AnalyticsRequest("POOL", pool_id, name) for name in names]


def _analytics_result(
    request: AnalyticsRequest, rng: Draws, finished: str
) -> AnalyticsResult:
    upper = 100 if request.name == "completion_percentage" else 20_000
    return AnalyticsResult(request, rng.randint(0, upper), finished)


def _log_items(
    op_type: str, content_seed: int, counts: BatchCounts, failed: bool
) -> list[LogItem]:
    rng = random.Random(content_seed ^ _LOG_SALT)
    pool_id = _numeric_id(rng)
    invalid = set(rng.sample(range(counts.total_count), counts.not_valid_count))
    items = []
    for index in range(counts.total_count):
        if index in invalid:
            items.append(_invalid_item(op_type, rng, pool_id))
        elif not failed:
            items.append(_created_item(op_type, rng, pool_id))
    return items


def _created_item(op_type: str, rng: random.Random, pool_id: str) -> LogItem:
    new_id = f"{rng.getrandbits(128):032x}"[:24]
    if op_type == "USER_BONUS.BATCH_CREATE":
        output = {"user_bonus_id": new_id}
        return LogItem("USER_BONUS_PERSIST", True, _bonus_input(rng), output)
    if op_type == "TASK_SUITE.BATCH_CREATE":
        output = {"task_suite_id": new_id}
        return LogItem("TASK_SUITE_CREATE", True, _task_input(rng, pool_id), output)
    return LogItem("TASK_CREATE", True, _task_input(rng, pool_id), {"task_id": new_id})


def _invalid_item(op_type: str, rng: random.Random, pool_id: str) -> LogItem:
    if op_type == "USER_BONUS.BATCH_CREATE":
        error = FieldError("VALUE_LESS_THAN_MIN", "Value must be at least 0.01")
        return LogItem(
            "USER_BONUS_VALIDATE", False, _bonus_input(rng), {"amount": error}
        )
    error = FieldError("VALUE_REQUIRED", "Value must be present and not equal to null")
    kind = (
        "TASK_SUITE_VALIDATE"
        if op_type == "TASK_SUITE.BATCH_CREATE"
        else "TASK_VALIDATE"
    )
    output = {"input_values.image": error}
    return LogItem(kind, False, _task_input(rng, pool_id), output)


def _task_input(rng: random.Random, pool_id: str) -> TaskInput:
    image = f"https://example.com/images/{rng.randint(1, 10**6)}.jpg"
    return TaskInput(pool_id, {"image": image}, f"{rng.getrandbits(128):032x}")


def _bonus_input(rng: random.Random) -> BonusInput:
    user_id = f"{rng.getrandbits(128):032x}"
    amount = f"{rng.randint(1, 500) / 100:.2f}"
    title = {"EN": "Thank you for your work"}
    return BonusInput(user_id, amount, title, f"{rng.getrandbits(128):032x}")


def _numeric_id(rng: random.Random | Draws) -> str:
    return str(rng.randint(1_000_000, 99_999_999))
