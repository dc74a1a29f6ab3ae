"""The experiment file, typed: what a game-day YAML may say, validated once at load time.

    title: Redis outage
    probe: {devices: 90, rate: 150, deadline: 1s}
    steady_state:
      probes:
        - {measure: delivery_rate, window: 3s, tolerance: {min: 99.9}}
        - {status: storage.mode, tolerance: {equals: redis}}
    method:
      - {action: fail-redis, mode: down, duration: 6s}
    stop_conditions:
      - {measure: delivery_rate, window: 2s, tolerance: {min: 50}, for: 1s}

Checks, method steps and rollback steps are unions told apart by the key they carry (`measure`,
`status`, `metric`; `action`, `wait`, `probe`), then by the value of `action`. The JSON Schema
in `experiments/schema.json` is generated from these models (`pushctl experiment schema`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)

from pushctl.errors import UsageError
from pushctl.probe.duration import format_duration, parse_duration

_DURATION = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|m|h)?(\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|m|h))*\s*$")


def _seconds(value: object) -> object:
    if isinstance(value, str):
        try:
            return parse_duration(value, allow_zero=True)
        except UsageError as exc:
            raise ValueError(f"{exc.message}; use a number with a unit: 500ms, 2s, 1m") from None
    return value


def _percent(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"invalid percentage {value!r}") from None
    return value


Duration = Annotated[
    float,
    BeforeValidator(_seconds),
    Field(ge=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "description": "seconds"},
                {"type": "string", "pattern": _DURATION.pattern, "description": "e.g. 500ms, 2s, 1m"},
            ]
        }
    ),
]
Percent = Annotated[
    float,
    BeforeValidator(_percent),
    Field(ge=0, le=100),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 100},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"},
            ]
        }
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# ---- tolerances and checks ----------------------------------------------------------------------
class Tolerance(_Model):
    """What a measured value must be: `{min: 99.9}`, `{max: 0}`, `{min: 0, max: 100}`, `{equals: redis}`."""

    min: float | None = None
    max: float | None = None
    equals: str | float | bool | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Tolerance:
        if self.min is None and self.max is None and self.equals is None:
            raise ValueError("a tolerance needs min, max (or both) or equals")
        if self.equals is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either equals or min/max, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    def holds(self, value: object) -> bool:
        if self.equals is not None:
            if isinstance(self.equals, bool) or isinstance(value, bool):
                return value == self.equals
            if isinstance(self.equals, int | float) and isinstance(value, int | float):
                return float(value) == float(self.equals)
            return str(value) == str(self.equals)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.equals is not None:
            return f"== {self.equals}"
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


class Measure(StrEnum):
    """What the probe measures. Windowed measures are over messages *sent* in the window."""

    DELIVERY_RATE = "delivery_rate"  # percent on time of sent
    LOST = "lost"
    LATE = "late"
    SENT = "sent"
    ON_TIME = "on_time"
    DUPLICATES = "duplicates"  # deliveries the app saw twice
    RAW_DUPLICATES = "raw_duplicates"  # frames received twice (before the device de-duplicated)
    UNEXPECTED = "unexpected"  # deliveries of pushes nobody sent to that device
    REJECTED = "rejected"  # pushes the platform answered it did not take (visible, not lost)
    LATENCY_P50_MS = "latency_p50_ms"
    LATENCY_P95_MS = "latency_p95_ms"
    LATENCY_P99_MS = "latency_p99_ms"
    DISPATCHER_OFFERED = "dispatcher_offered"  # dispatcher answers (to probe devices) that offered `region`
    ONLINE_PERCENT = "online_percent"  # probe devices connected right now, percent (not windowed)
    CONNECTED = "connected"  # probe devices connected right now (in `region`, or in total)


INSTANT_MEASURES = frozenset({Measure.ONLINE_PERCENT, Measure.CONNECTED})
# Measures a slow test rig can make fail (lateness, pace, how fast devices move): a failure of one of
# these while the rig could not keep up is inconclusive. Every other measure (loss, duplicates,
# unexpected or rejected pushes, what the dispatcher said) fails whatever the rig did.
TIMING_MEASURES = frozenset(
    {
        Measure.DELIVERY_RATE,
        Measure.LATE,
        Measure.SENT,
        Measure.ON_TIME,
        Measure.LATENCY_P50_MS,
        Measure.LATENCY_P95_MS,
        Measure.LATENCY_P99_MS,
        Measure.ONLINE_PERCENT,
        Measure.CONNECTED,
    }
)
PushKind = Literal["single", "group", "region-group"]


class DeliveryCheck(_Model):
    """A probe measure over a window of sent messages (or, for instant measures, right now)."""

    name: str | None = None
    measure: Measure
    region: Name | None = Field(
        default=None, description="only the probe devices of this home region (dispatcher_offered: the region offered)"
    )
    kind: PushKind | None = Field(default=None, description="only single pushes, group pushes or region group pushes")
    population: Literal["online", "offline"] | None = Field(
        default=None,
        description="only messages to devices online when sent (the SLO's), or to devices away on purpose",
    )
    window: Duration = Field(default=3.0, gt=0, description="measure over messages sent in this window")
    tolerance: Tolerance

    @model_validator(mode="after")
    def _region_for_dispatcher(self) -> DeliveryCheck:
        if self.measure == Measure.DISPATCHER_OFFERED and self.region is None:
            raise ValueError("dispatcher_offered needs the region it counts (region: south)")
        if self.measure in INSTANT_MEASURES | {Measure.DISPATCHER_OFFERED} and (self.kind or self.population):
            raise ValueError(f"{self.measure.value} is not about messages: kind and population do not apply")
        return self

    @property
    def timing(self) -> bool:
        """A check a slow rig can make fail (see TIMING_MEASURES)."""
        return self.measure in TIMING_MEASURES

    def title(self) -> str:
        where = f"[{self.region}]" if self.region else ""
        where += f"[{self.kind}]" if self.kind else ""
        where += f"[{self.population}]" if self.population else ""
        return self.name or f"{self.measure.value}{where} {self.tolerance.describe()}"


class StatusCheck(_Model):
    """A field of `pushctl status --json` by dotted path, e.g. `storage.mode`; lists count as their length."""

    name: str | None = None
    status: str = Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    tolerance: Tolerance
    timing: bool = False  # the platform's state, not the rig's

    def title(self) -> str:
        return self.name or f"status {self.status} {self.tolerance.describe()}"


class MetricCheck(_Model):
    """A Prometheus metric of one service (summed over the samples whose labels include `labels`)."""

    name: str | None = None
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    service: Name
    labels: dict[str, str] = Field(default_factory=dict, description="only samples with these labels")
    delta: bool = Field(
        default=False,
        description="the increase since the method began (a counter's lifetime total says nothing about this run)",
    )
    tolerance: Tolerance
    timing: bool = False  # the platform's own counters, not the rig's

    def title(self) -> str:
        label = "{" + ",".join(f"{k}={v}" for k, v in self.labels.items()) + "}" if self.labels else ""
        what = f"increase of {self.metric}{label}" if self.delta else f"{self.metric}{label}"
        return self.name or f"{self.service} {what} {self.tolerance.describe()}"


class PromqlCheck(_Model):
    """A PromQL expression evaluated now by Prometheus (the stack's, or `--prometheus URL`).

    Every series of the result must hold the tolerance; an empty result (or NaN: a ratio of no
    traffic) fails, so a counter that stopped counting cannot pass as "nothing wrong".
    """

    name: str | None = None
    promql: str = Field(min_length=1, description="an instant-vector or scalar PromQL expression")
    tolerance: Tolerance
    timing: bool = False  # the platform's own metrics, not the rig's

    def title(self) -> str:
        return self.name or f"promql {self.promql} {self.tolerance.describe()}"


def _key_tag(*keys: str) -> Any:
    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            return next((k for k in keys if k in value), None)
        return next((k for k in keys if hasattr(value, k)), None)

    return pick


_CHECK_KEYS = ("measure", "status", "metric", "promql")
_CHECK_ERROR = (
    "a check names one of: measure (probe), status (platform state), metric (a service's /metrics),"
    " promql (a Prometheus query)"
)

Check = Annotated[
    Annotated[DeliveryCheck, Tag("measure")]
    | Annotated[StatusCheck, Tag("status")]
    | Annotated[MetricCheck, Tag("metric")]
    | Annotated[PromqlCheck, Tag("promql")],
    Discriminator(_key_tag(*_CHECK_KEYS), custom_error_type="check_kind", custom_error_message=_CHECK_ERROR),
]


class _StopFor(_Model):
    for_: Duration = Field(default=0.0, alias="for", description="abort once broken this long")


class StopDelivery(DeliveryCheck, _StopFor):
    window: Duration = Field(default=2.0, gt=0)


class StopStatus(StatusCheck, _StopFor):
    pass


class StopMetric(MetricCheck, _StopFor):
    pass


StopCondition = Annotated[
    Annotated[StopDelivery, Tag("measure")]
    | Annotated[StopStatus, Tag("status")]
    | Annotated[StopMetric, Tag("metric")],
    Discriminator(_key_tag(*_CHECK_KEYS), custom_error_type="check_kind", custom_error_message=_CHECK_ERROR),
]


class LedgerTolerance(_Model):
    """The whole run's ledger, checked once the probe has stopped, over every message of the run.

    Nothing may be lost and no push may arrive that nobody sent; how many app-visible duplicates
    (at-least-once delivery let through the device's de-duplication) and visible rejections the
    experiment tolerates, it declares.
    """

    duplicates: int = Field(ge=0, description="app-visible duplicates tolerated over the whole run")
    rejected: int = Field(default=0, ge=0, description="pushes the platform may visibly refuse over the whole run")


class SteadyState(_Model):
    """The hypothesis: `probes` hold before and after the method; `during` over the whole method."""

    title: str = "the platform delivers"
    probes: list[Check] = Field(min_length=1)
    during: list[DeliveryCheck] = Field(
        default_factory=list, description="exact, over every message sent while the method ran"
    )


# ---- method steps ---------------------------------------------------------------------------------
class _Step(_Model):
    name: str | None = None
    background: bool = Field(default=False, description="start it and go on; it ends on its own")
    cohort: Literal["experiment"] | None = Field(
        default=None,
        description="only the experiment cohort's device links (fault and link-down on a device link, storm, "
        "connections; needs `cohorts:`)",
    )


class DrainStep(_Step):
    action: Literal["drain"]
    region: Name
    spread: Duration = 5.0
    timeout: Duration | None = None


class RestoreStep(_Step):
    action: Literal["restore"]
    region: Name
    timeout: Duration = 30.0


class FailRegionStep(_Step):
    action: Literal["fail-region"]
    region: Name
    mode: Literal["link-down", "vpc-down", "crash"] = "link-down"
    duration: Duration = Field(default=15.0, gt=0)
    max_impact: Duration = 10.0


class FailIdcStep(_Step):
    action: Literal["fail-idc"]
    idc: Name
    duration: Duration = Field(default=15.0, gt=0)


class FailRedisStep(_Step):
    action: Literal["fail-redis"]
    mode: Literal["down", "latency", "crash"] = "down"
    latency: Duration = Field(default=0.2, gt=0, description="round trip added in mode latency")
    duration: Duration = Field(default=15.0, gt=0)


class SwitchIdcStep(_Step):
    action: Literal["switch-idc"]
    to: Name | None = None
    weights: dict[Name, float] | None = None
    duration: Duration = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> SwitchIdcStep:
        if (self.to is None) == (self.weights is None):
            raise ValueError("give exactly one of to or weights")
        return self


class ThrottleStep(_Step):
    action: Literal["throttle"]
    limit: float | None = Field(default=None, gt=0, description="direct-path pushes per second")
    auto: bool = False
    safe_load: float | None = Field(default=None, gt=0)
    threshold: float = Field(default=0.8, gt=0, le=1)
    duration: Duration = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _one_mode(self) -> ThrottleStep:
        if (self.limit is None) == (not self.auto):
            raise ValueError("give exactly one of limit or auto: true")
        return self


class FaultStep(_Step):
    """A toxic on a named link (`pushctl fault add`) for `duration`."""

    action: Literal["fault"]
    link: Name
    toxic: str
    attributes: dict[str, int] = Field(default_factory=dict)
    stream: Literal["up", "down", "both"] = "down"
    toxicity: float = Field(default=1.0, ge=0, le=1)
    reset_connections: bool = False
    duration: Duration = Field(default=10.0, gt=0)


class LinkDownStep(_Step):
    action: Literal["link-down"]
    link: Name
    duration: Duration = Field(default=10.0, gt=0)


class SpikeStep(_Step):
    """Multiply the probe's send rate by `factor` for `duration` (a breaking-news burst)."""

    action: Literal["spike"]
    factor: float = Field(gt=0, le=100)
    duration: Duration = Field(gt=0)


def _count_or_percent(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        return value.strip()
    return value


class OfflineStep(_Step):
    """Take probe devices off the platform for `duration`, then back (through the dispatcher, as joins).

    `drop` loses each connection abruptly (a phone in a tunnel), `close` leaves with a close frame.
    Messages sent to them meanwhile must arrive after they are back, exactly once (the ledger's
    offline class: on time when within the deadline of the return).
    """

    action: Literal["offline"]
    devices: Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*%\s*$")] = Field(
        description="how many connected devices: a number or a percentage (30%)"
    )
    region: Name | None = Field(default=None, description="only devices of this home region")
    duration: Duration = Field(gt=0)
    mode: Literal["drop", "close"] = "drop"

    def count(self, of: int) -> int:
        """How many devices out of `of` candidates."""
        if isinstance(self.devices, str):
            return max(1, round(of * float(self.devices.strip()[:-1]) / 100))
        return min(self.devices, of)


class LimitStep(_Step):
    """Hold a region's broker to `limit` connections for `duration` (a region at capacity)."""

    action: Literal["limit"]
    region: Name
    limit: int = Field(ge=0, le=1_000_000)
    duration: Duration = Field(default=10.0, gt=0)


class CrashStep(_Step):
    """SIGKILL one push service for `duration`, then restart it (e.g. the bypass consumer)."""

    action: Literal["crash"]
    service: Name
    duration: Duration = Field(default=5.0, gt=0)


class StormStep(_Step):
    """Every device connection of a region closed at once: a reconnect storm (`pushctl fault storm`)."""

    action: Literal["storm"]
    region: Name
    max_recovery: Duration = Field(default=20.0, gt=0, le=600, description="every device back within this")


class ConnectionsStep(_Step):
    """A share of a region's live device connections dropped, or left half-open for `duration`
    (`pushctl fault connections`). `keepalive` is the probe's: how often its devices ping."""

    action: Literal["connections"]
    region: Name
    drop: Percent | None = Field(default=None, gt=0, description="share of live connections reset, e.g. 30%")
    half_open: Percent | None = Field(
        default=None, gt=0, alias="half-open", description="share of live connections left open but silent"
    )
    duration: Duration | None = Field(default=None, gt=0, le=3600, description="half-open: how long (default 10s)")
    keepalive: Duration = Field(default=1.0, ge=0.1, le=300)
    max_recovery: Duration | None = Field(default=None, gt=0, le=600, description="every device back within this")

    @model_validator(mode="after")
    def _one_fault(self) -> ConnectionsStep:
        if (self.drop is None) == (self.half_open is None):
            raise ValueError("give exactly one of drop or half-open")
        if self.drop is not None and self.duration is not None:
            raise ValueError("duration is for half-open (a drop lasts one keepalive)")
        return self


ActionStep = Annotated[
    DrainStep
    | RestoreStep
    | FailRegionStep
    | FailIdcStep
    | FailRedisStep
    | SwitchIdcStep
    | ThrottleStep
    | FaultStep
    | LinkDownStep
    | SpikeStep
    | OfflineStep
    | LimitStep
    | CrashStep
    | StormStep
    | ConnectionsStep,
    Field(discriminator="action"),
]
ACTIONS: tuple[str, ...] = (
    "drain",
    "restore",
    "fail-region",
    "fail-idc",
    "fail-redis",
    "switch-idc",
    "throttle",
    "fault",
    "link-down",
    "spike",
    "offline",
    "limit",
    "crash",
)


class WaitStep(_Model):
    name: str | None = None
    wait: Duration = Field(gt=0)


class ProbeStep(_Model):
    """Measure mid-method; with a tolerance, a miss marks the run deviated (the method goes on)."""

    name: str | None = None
    probe: Check


_STEP_ERROR = "a step names one of: action, wait, probe"
Step = Annotated[
    Annotated[ActionStep, Tag("action")] | Annotated[WaitStep, Tag("wait")] | Annotated[ProbeStep, Tag("probe")],
    Discriminator(_key_tag("action", "wait", "probe"), custom_error_type="step_kind", custom_error_message=_STEP_ERROR),
]


class ClearFaultsStep(_Model):
    name: str | None = None
    action: Literal["clear-faults"]
    link: Name | None = Field(default=None, description="one link; every link when absent")


RollbackAction = Annotated[RestoreStep | ClearFaultsStep, Field(discriminator="action")]
_ROLLBACK_ERROR = "a rollback step names one of: action (restore, clear-faults), wait"
RollbackStep = Annotated[
    Annotated[RollbackAction, Tag("action")] | Annotated[WaitStep, Tag("wait")],
    Discriminator(_key_tag("action", "wait"), custom_error_type="step_kind", custom_error_message=_ROLLBACK_ERROR),
]


# ---- settings -------------------------------------------------------------------------------------
class ProbeSettings(_Model):
    """The one probe that runs from the steady state before to the steady state after."""

    devices: int = Field(default=90, ge=1, le=50_000)
    rate: float = Field(default=150.0, gt=0, description="single pushes per second")
    group_rate: float = Field(default=0.0, ge=0, le=1000, description="group pushes to a device list per second")
    group_size: int = Field(default=10, ge=1, le=10_000, description="devices per group push")
    region_group_rate: float = Field(default=0.0, ge=0, le=100, description="group pushes to a whole region per second")
    deadline: Duration = Field(default=1.0, gt=0, description="on time when delivered within this")
    grace: Duration = Field(default=3.0, description="how long a late message may still arrive")
    warmup: Duration = 1.0
    keepalive: Duration = Field(
        default=10.0, ge=0.1, le=300, description="devices ping this often; a silent connection is dead after as long"
    )
    regions: dict[Name, float] | None = Field(default=None, description="home-region weights")
    seed: int | None = Field(default=None, description="fixes which devices are picked (targets, offline steps)")


class BlastRadius(_Model):
    """What the method may touch; checked before anything runs, `devices` watched while it runs."""

    regions: list[Name] | None = Field(default=None, description="region-scoped steps stay in these")
    idcs: list[Name] | None = Field(default=None, description="IDC-scoped steps stay in these")
    devices: Percent = Field(default=100.0, description="abort when more probe devices are offline")
    for_: Duration = Field(default=2.0, alias="for", description="... for this long")


# Steps that can act on one cohort only: faults of the experiment cohort's own device links (toxics,
# link down, a storm, dropped or half-open connections). A drain, an IDC switch or power loss, Redis,
# a throttle, a broker crash or limit and the scheduler's auto drain reach both cohorts by nature.
COHORT_STEPS = ("fault", "link-down", "storm", "connections")


class CohortSettings(_Model):
    """Split the probe's devices into a control and an experiment cohort (`cohort: experiment` steps
    fault only the latter) and judge the difference over the method, with a confidence interval."""

    share: Percent = Field(default=50.0, gt=0, lt=100, description="the experiment cohort's share of devices")
    confidence: float = Field(default=95.0, ge=50, lt=100, description="percent, for every interval")
    control: Tolerance = Field(
        default_factory=lambda: Tolerance(min=99.0),
        description="the control cohort's delivery rate over the method (and nothing lost): it was unaffected",
    )
    max_cost: float | None = Field(
        default=None, ge=0, description="points of delivery the experiment cohort may lose against control, "
        "at the interval's upper end"
    )  # fmt: skip
    min_cost: float | None = Field(
        default=None, description="points it must lose at the interval's lower end (the fault reached it)"
    )
    max_p99_increase_ms: float | None = Field(
        default=None, ge=0, description="p99 latency above control at most this, at the bootstrap interval's upper end"
    )


class Experiment(_Model):
    """One game-day experiment (a YAML file in `experiments/`)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        title="pushctl experiment",
        json_schema_extra={"$id": "https://pushctl.invalid/experiments/schema.json"},
    )

    title: str = Field(min_length=1)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    weight: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="how much this experiment counts in the resilience score (0 < weight <= 100; default 1)",
    )
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    ledger: LedgerTolerance = Field(description="the whole run's ledger: lost is always 0; duplicates declared")
    steady_state: SteadyState
    method: list[Step] = Field(min_length=1)
    stop_conditions: list[StopCondition] = Field(default_factory=list)
    rollbacks: list[RollbackStep] = Field(default_factory=list, description="run after the automatic undo")
    cohorts: CohortSettings | None = Field(default=None, description="control vs experiment cohorts")

    @model_validator(mode="after")
    def _cohort_steps(self) -> Experiment:
        for i, step in enumerate(self.method):
            if getattr(step, "cohort", None) is None:
                continue
            action = getattr(step, "action", "?")
            if action not in COHORT_STEPS:
                raise ValueError(
                    f"method[{i}] ({action}): only device-link faults ({', '.join(COHORT_STEPS)}) "
                    f"can be limited to a cohort; a {action} reaches both cohorts by nature"
                )
            if self.cohorts is None:
                raise ValueError(f"method[{i}] ({action}): cohort: experiment needs a cohorts: section")
        return self

    @property
    def uses_promql(self) -> bool:
        """Whether a check asks Prometheus (so the run needs one to ask)."""
        probes = [s.probe for s in self.method if isinstance(s, ProbeStep)]
        return any(isinstance(c, PromqlCheck) for c in [*self.steady_state.probes, *probes])


def step_label(step: object) -> str:
    """A one-line description of a method or rollback step."""
    name = getattr(step, "name", None)
    if isinstance(step, WaitStep):
        return name or f"wait {format_duration(step.wait)}"
    if isinstance(step, ProbeStep):
        return name or f"probe {step.probe.title()}"
    action = getattr(step, "action", "?")
    if name:
        return str(name)
    parts = [str(action)]
    for key in ("devices", "region", "idc", "service", "link", "mode", "to", "toxic", "factor", "limit", "cohort"):
        value = getattr(step, key, None)
        if value is not None:
            parts.append(f"{value}x" if key == "factor" else str(value))
    duration = getattr(step, "duration", None)
    if duration is not None:
        parts.append(f"for {format_duration(duration)}")
    return " ".join(parts)
