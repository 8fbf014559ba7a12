"""Two replicas of the service behind one address decide as one replica does.

A decision's step count is the smaller of the calls this process remembers for the step and the
windows Prometheus shows the canary at its current share (``api.step_count``). Each replica
remembers only the calls it received, so behind a Service that spreads the controller's calls
over N replicas every count is about 1/N of the truth and the ``step_count`` rule holds where one
replica would move on. The chart's Service therefore pins a client to one replica
(``sessionAffinity: ClientIP``; Argo's analysis runs in one controller, the leader). Here two
real service processes sit behind a loopback proxy that balances as kube-proxy does, answered by
the project's fake Prometheus (a healthy canary, 10 minutes old). Their model promotes after
three measurements at a step and holds before (the shipped one holds this canary at every
count, so only the counts would show a difference; this one shows it in the decisions too):

* with client-IP affinity the two replicas give the answers one replica gives, call for call;
* spread round robin they do not (what the affinity is for: the test can tell them apart);
* when the pinned replica goes away mid-step, the other one carries on with a count that
  restarts from zero: smaller, never larger, than one replica's (a hold, not a guess).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_prometheus import FakePrometheus, Traffic, demo_prometheus
from tests.support.onnx_models import build_model
from tests.support.service import BODY
from tests.support.service_process import ServiceProcess
from tests.support.tcp_proxy import Balance, FaultProxy

#: The step weights of one rollout's calls: four measurements at each of three steps.
WEIGHTS = (5, 5, 5, 5, 10, 10, 10, 10, 20, 20, 20, 20)

Answer = tuple[float, str, str | None, float]


def _decide(url: str, canary: str, weights: tuple[int, ...] = WEIGHTS) -> list[Answer]:
    """(weight, decision, guardrail, measurements_at_step) of each call, one connection each
    (as a controller that does not keep its connection: the harder case for a Service)."""
    answers = []
    with httpx.Client(headers={"Connection": "close"}, timeout=10) as client:
        for weight in weights:
            body = BODY | {"canary_hash": canary, "step_weight": str(weight)}
            response = client.post(f"{url}/v1/decide", json=body)
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            observation = answer["observation"]
            assert observation is not None, answer
            answers.append(
                (
                    weight,
                    answer["decision"],
                    answer["guardrail"],
                    observation["measurements_at_step"],
                )
            )
    return answers


#: The answers one replica gives to WEIGHTS with the patient model on this canary.
ONE_REPLICA = [
    (w, "promote" if i % 4 == 3 else "hold", None, (i % 4) / 10) for i, w in enumerate(WEIGHTS)
]


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hold (q 1) until ``measurements_at_step`` (count / 10) reaches 0.3: promote's q is 4x it."""
    return build_model(
        tmp_path_factory.mktemp("models") / "patient.onnx",
        q_values=(1.0, 0.0, -1.0),  # hold, promote, abort
        weights={("measurements_at_step", "promote"): 4.0},
    )


@pytest.fixture(scope="module")
def prometheus() -> Iterator[FakePrometheus]:
    handler = demo_prometheus(Traffic(300, 0.3, 0.05), Traffic(1200, 1.5, 0.05))
    with FakePrometheus(handler) as fake:
        yield fake


def _replica(prometheus: FakePrometheus, model: Path) -> ServiceProcess:
    return ServiceProcess({"MODEL_PATH": str(model), "PROMETHEUS_URL": prometheus.url})


@pytest.fixture(scope="module")
def replicas(
    prometheus: FakePrometheus, patient: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    with _replica(prometheus, patient) as first, _replica(prometheus, patient) as second:
        yield first, second


@pytest.fixture(scope="module")
def one_replica(replicas: tuple[ServiceProcess, ServiceProcess]) -> list[Answer]:
    """The reference: every call to the first replica directly."""
    answers = _decide(replicas[0].url, "aaaa1111")
    assert answers == ONE_REPLICA
    return answers


def _behind_proxy(
    replicas: tuple[ServiceProcess, ...], balance: Balance, canary: str
) -> tuple[list[Answer], list[int]]:
    with FaultProxy([r.port for r in replicas], balance=balance) as service:
        answers = _decide(service.url, canary)
        return answers, service.connections


def test_two_replicas_with_client_ip_affinity_decide_as_one(
    replicas: tuple[ServiceProcess, ServiceProcess], one_replica: list[Answer]
) -> None:
    answers, connections = _behind_proxy(replicas, "client_ip", "bbbb2222")
    assert sorted(connections) == [0, len(WEIGHTS)]  # every call reached the same replica
    assert answers == one_replica  # a promote after the third measurement at each step


def test_spread_round_robin_each_replica_counts_half_the_calls(
    replicas: tuple[ServiceProcess, ServiceProcess], one_replica: list[Answer]
) -> None:
    answers, connections = _behind_proxy(replicas, "round_robin", "cccc3333")
    assert connections == [len(WEIGHTS) // 2] * 2
    # each replica saw every other call: counts 0, 0, 1, 1 at each step, and never a promote
    assert [a[3] for a in answers] == [pytest.approx(i / 10) for i in (0, 0, 1, 1) * 3]
    assert {a[1] for a in answers} == {"hold"}
    assert answers != one_replica


def test_when_the_pinned_replica_goes_the_count_restarts_never_larger(
    prometheus: FakePrometheus, patient: Path, one_replica: list[Answer]
) -> None:
    with _replica(prometheus, patient) as first, _replica(prometheus, patient) as second:
        pair = (first, second)
        with FaultProxy([first.port, second.port], balance="client_ip") as service:
            before = _decide(service.url, "dddd4444", WEIGHTS[:2])
            pinned = service.connections.index(2)
            pair[pinned].stop()
            after = _decide(service.url, "dddd4444", WEIGHTS[2:])
            assert service.connections[1 - pinned] == len(WEIGHTS) - 2
    answers = before + after
    # two calls on the pinned replica, then the other one starts the step's count again: its
    # promote at the first step comes two measurements later than one replica's, not earlier
    assert [a[3] for a in answers][:4] == [pytest.approx(v) for v in (0, 0.1, 0, 0.1)]
    assert [a[1] for a in answers][:4] == ["hold"] * 4
    for mine, reference in zip(answers, one_replica, strict=True):
        assert mine[3] <= reference[3] + 1e-9, (mine, reference)
