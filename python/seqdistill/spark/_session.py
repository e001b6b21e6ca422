"""The Spark session seqdistill starts, and what its jobs cost (the status tracker's counts).

A session is only started when the caller hands none and none is active: on a cluster,
``spark-submit`` has made one already and its settings win. The local session is tuned to start
fast (UI off, few shuffle partitions, Arrow on) because tests and small logs pay its start-up.

:class:`JobMeter` counts the Spark jobs of a named step (one job group per step) and, from the
application's status store in the driver's JVM, the bytes they shuffled. No REST call, no UI.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seqdistill.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["JobMeter", "StepCost", "require_spark", "session"]

#: Job groups are unique per process run (a group name reused would count another run's jobs).
_GROUPS = itertools.count()
_RUN = uuid.uuid4().hex[:8]

#: Settings of the session seqdistill starts itself (a running session's own settings are kept).
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    # the driver gathers the prepared dataset (see docs/spark.md, driver memory)
    "spark.driver.maxResultSize": "0",
}


def require_spark() -> None:
    """Refuse early, in one line, when pyspark or Java is missing (the ``[spark]`` extra)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the Spark engine needs pyspark: pip install 'seqdistill[spark]' (and Java 17: openjdk-17-jre-headless)"
        ) from None
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))):
        raise ConfigError(
            "the Spark engine needs Java 17 (apt-get install -y openjdk-17-jre-headless, or set JAVA_HOME)"
        )


def session(master: str | None = None, driver_memory: str | None = None, conf: dict[str, str] | None = None) -> Any:
    """The active Spark session, or a new one. Under ``spark-submit`` (its gateway is already
    up) and without ``master``, the submitted master and settings are used as they are;
    otherwise the session runs on ``master`` (default ``local[2]``) with :data:`LOCAL_CONF`,
    ``driver_memory`` (e.g. ``"4g"``) and ``conf`` on top."""
    require_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    builder = SparkSession.builder.appName("seqdistill")
    if master is None and "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit
        settings = {"spark.sql.execution.arrow.pyspark.enabled": "true", **(conf or {})}
    else:
        builder = builder.master(master or "local[2]")
        settings = {**LOCAL_CONF, **(conf or {})}
        if driver_memory:
            settings["spark.driver.memory"] = driver_memory
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@dataclass
class StepCost:
    """Spark jobs, stages and shuffled bytes (written by map tasks) of one named step."""

    step: str
    jobs: int = 0
    stages: int = 0
    shuffle_write_bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "jobs": self.jobs,
            "stages": self.stages,
            "shuffle_write_bytes": self.shuffle_write_bytes,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class JobMeter:
    """Runs each step in its own job group and reads back what the group's jobs cost."""

    spark: SparkSession
    steps: list[StepCost] = field(default_factory=list)

    def step(self, name: str) -> _Step:
        return _Step(self, name, f"seqdistill-{_RUN}-{next(_GROUPS)}")

    def _collect(self, name: str, group: str, seconds: float) -> None:
        sc = self.spark.sparkContext
        try:  # the status store is fed by the listener bus: let it catch up with the finished jobs
            sc._jsc.sc().listenerBus().waitUntilEmpty(10_000)
        except Exception:
            pass
        tracker = sc.statusTracker()
        jobs = list(tracker.getJobIdsForGroup(group))
        stage_ids: set[int] = set()
        for j in jobs:
            info = tracker.getJobInfo(j)
            if info is not None:
                stage_ids.update(info.stageIds)
        cost = StepCost(name, jobs=len(jobs), seconds=seconds)
        store = sc._jsc.sc().statusStore()  # the application's status store, in the driver's JVM
        for s in stage_ids:
            try:
                for attempt in _iterate(store.stageData(s, False, _empty_list(sc), False, _empty_array(sc))):
                    if attempt.status().toString() == "COMPLETE":
                        cost.stages += 1
                        cost.shuffle_write_bytes += int(attempt.shuffleWriteBytes())
            except Exception:  # a stage skipped (its shuffle reused) has no data: it cost nothing
                continue
        self.steps.append(cost)

    def total(self, prefix: str = "") -> StepCost:
        """The sum over the steps whose name starts with ``prefix``."""
        out = StepCost(prefix or "all")
        for s in self.steps:
            if s.step.startswith(prefix):
                out.jobs += s.jobs
                out.stages += s.stages
                out.shuffle_write_bytes += s.shuffle_write_bytes
                out.seconds += s.seconds
        return out


class _Step:
    """A step's job group, set for the ``with`` block; its cost is read back at the end."""

    def __init__(self, meter: JobMeter, name: str, group: str) -> None:
        self.meter, self.name, self.group = meter, name, group

    def __enter__(self) -> _Step:
        self._t0 = time.perf_counter()
        self.meter.spark.sparkContext.setJobGroup(self.group, f"seqdistill: {self.name}")
        return self

    def __exit__(self, *exc: Any) -> None:
        sc = self.meter.spark.sparkContext
        sc.setLocalProperty("spark.jobGroup.id", None)
        if exc[0] is None:
            self.meter._collect(self.name, self.group, time.perf_counter() - self._t0)


def _iterate(seq: Any) -> list[Any]:
    it = seq.iterator()
    out = []
    while it.hasNext():
        out.append(it.next())
    return out


def _empty_list(sc: Any) -> Any:
    return sc._jvm.java.util.Collections.emptyList()


def _empty_array(sc: Any) -> Any:
    return sc._gateway.new_array(sc._jvm.double, 0)
