"""``make demo``: a live canary rollout on this machine, decided by the agent.

``python -m demo_apps.local.demo --scenario healthy|buggy|degrading|flaky|<file>`` starts
Prometheus, the stable and canary apps (the scenario's behaviour), the decision service and a
load generator that splits traffic by the canary weight, then runs the project's Rollout and
AnalysisTemplate (``rollouts/base``) with the local driver. It prints each step, weight and
decision with its reason, the verdict at the end, writes ``timeline.png`` and ``events.jsonl`` to
the run folder, and stops every process it started, also on Ctrl-C.

Time is compressed: the analysis interval (Argo's ``interval`` arg, 30 s in the template) is
``--interval`` seconds here (default 3), and the apps' scenario clock runs faster by the same
factor (a degrading canary drifts per *scenario* minute), as does Argo's 10 s error retry.
Traffic is compressed too, as far as the machine allows: the load is the scenario's rate times
the time factor, capped at ``--max-rps`` (1,500 by default, which the local stack serves on 2
cores beside Prometheus and the decision service), so an interval holds as many requests as one
simulated interval unless the scenario's rate is above 150 req/s. A scenario's traffic profile
multiplies that rate over the canary's life (scenario minutes, compressed like the rest), and
the cap then applies at the profile's peak, so the profile's shape is kept
(:func:`live_request_rate`). The load generator also tells the canary app each weight it routes
(its traffic share: load-dependent regressions, scale-ups' cold starts).

When the rollout pauses (the analysis was Inconclusive: the agent kept answering ``hold``),
type ``promote`` or ``abort`` (or write the word to ``<run dir>/control``) within
``--pause-timeout`` seconds; otherwise the demo ends with the verdict ``paused``, as a real
Rollout would stay paused.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from decision_service.settings import Settings
from demo_apps.app.behaviour import live_parameters
from demo_apps.local.commands import CommandQueue, read_commands, watch_control_file
from demo_apps.local.driver import Event, RolloutDriver, Verdict
from demo_apps.local.loadgen import LoadGenerator, RateProfile
from demo_apps.local.manifests import Manifests, format_duration, parse_duration
from demo_apps.local.stack import LocalStack, StackConfig
from demo_apps.local.timeline import plot_timeline
from scenarios import resolve_scenario

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "rollouts" / "base"
TOKEN_SECRET = ("k8s-rollout-agent-token", "token")
#: Argo's DefaultErrorRetryInterval, scaled like every other interval.
ARGO_ERROR_RETRY_SECONDS = 10.0
#: Above this share of dropped arrivals the demo says its evidence was thinner than asked.
DROPPED_WARNING_SHARE = 0.02


@dataclass
class DemoOptions:
    scenario: str = "healthy"
    seed: int = 1
    interval_seconds: float = 3.0
    count: int | None = None  # default: the template's
    max_rps: float = 1500.0
    run_dir: Path = field(default_factory=lambda: REPO_ROOT / "runs" / "demo")
    manifests: Path = MANIFESTS
    decision_url: str | None = None  # an already running decision endpoint instead
    model_path: str | None = None
    slo_latency_ms: float | None = None
    pause_timeout: float | None = 0.0
    interactive: bool = False
    warmup_intervals: float = 1.0
    plot: bool = True
    decision_env: dict[str, str] = field(default_factory=dict)


@dataclass
class DemoResult:
    verdict: Verdict
    events: list[Event]
    seconds: float
    run_dir: Path
    timeline: Path | None
    requests: dict[str, dict[str, float]]
    rps: float  # the load asked for (at profile factor 1)
    hashes: dict[str, str]
    served_rps: float = 0.0  # the load the apps served (answered requests per second)
    #: :func:`load_warning`'s text when the load generator did not keep up, else None.
    load_warning: str | None = None

    @property
    def decisions(self) -> list[str | None]:
        return [e.data.get("decision") for e in self.events if e.kind == "measurement"]


def live_request_rate(
    scenario_rps: float, time_scale: float, max_rps: float, peak_factor: float = 1.0
) -> float:
    """The load a live run sends at profile factor 1: the scenario's rate compressed like time,
    within the cap at the traffic profile's highest factor ``peak_factor``.

    The load at any moment is this times the profile's factor then, so it never exceeds
    ``max_rps`` and keeps the profile's shape (a dip to 20 % is a dip to 20 % of what the peak
    sends, whether the cap binds or not), as the simulator's requests follow it."""
    if peak_factor <= 0:
        raise ValueError(f"peak_factor must be positive, got {peak_factor}")
    return min(scenario_rps * time_scale, max_rps / peak_factor)


def load_warning(served: int, dropped: int, rps: float, served_rps: float) -> str | None:
    """A warning when the load generator dropped more than :data:`DROPPED_WARNING_SHARE` of
    its arrivals at its in-flight limit, else ``None``.

    Dropped arrivals mean the apps fell behind the asked rate on this machine, so every window
    held fewer requests than the scenario gives the simulator, and a live run is not the run
    its figures claim (the e2e tests hold the same 2 % bound). The way out is a lower
    ``--max-rps``: about four fifths of what was served, rounded down to a hundred.
    """
    arrivals = served + dropped
    if arrivals <= 0 or dropped <= DROPPED_WARNING_SHARE * arrivals:
        return None
    lower = max(100, int(0.8 * served_rps) // 100 * 100)
    return (
        f"warning: the load generator dropped {dropped / arrivals:.1%} of its arrivals "
        f"({dropped} of {arrivals}): this machine did not serve {rps:.0f} req/s beside "
        "Prometheus and the decision service, so the canary saw less evidence than the "
        f"scenario gives the simulator; run again with --max-rps {lower} to compare live "
        "with simulated"
    )


def template_interval_seconds(manifests: Manifests) -> float:
    """The template's default ``interval`` arg: the real (uncompressed) analysis interval."""
    template = manifests.only("AnalysisTemplate")
    for arg in template["spec"].get("args", []):
        if arg["name"] == "interval" and "value" in arg:
            return parse_duration(arg["value"])
    return 30.0


def format_event(event: Event, origin: float, total_steps: int) -> str | None:
    """One line of live progress, or ``None`` for events not worth a line."""
    at = f"[{event.time - origin:6.1f}s]"
    step = f"step {event.step + 1:2d}/{total_steps}" if event.step is not None else " " * 10
    data = event.data
    if event.kind == "measurement":
        decision = data.get("decision") or "error"
        detail = data.get("reason") or data.get("error") or ""
        guardrail = f" [guardrail {data['guardrail']}]" if data.get("guardrail") else ""
        return (
            f"{at} {step}   #{data['number']:<2d} {decision:<7s} ({data['phase']}){guardrail} "
            f"{detail}"
        )
    if event.kind == "weight":
        return f"{at} {step} setWeight -> canary {event.weight} %"
    if event.kind in (
        "analysis",
        "initial_delay",
        "canary_ready",
        "dry_run",
        "analysis_done",
        "paused",
        "pause",
        "command",
        "start",
    ):
        return f"{at} {step} {event.message}"
    if event.kind == "verdict":
        return f"{at} VERDICT: {event.message}"
    return None


def decided_at(verdict: Verdict, events: Sequence[Event]) -> int:
    """The weight the rollout was at when it ended: after an abort the verdict's weight is 0
    (all traffic back to stable), but the abort was decided at the last measured weight."""
    if verdict.outcome == "aborted":
        measured = [e.weight for e in events if e.kind == "measurement"]
        if measured:
            return measured[-1]
    return verdict.weight


def run_demo(options: DemoOptions, printer: Callable[[str], None] | None = print) -> DemoResult:
    """Run one live rollout end to end; every process started is stopped before returning."""
    say = printer or (lambda line: None)
    scenario = resolve_scenario(options.scenario)
    manifests = Manifests.load(options.manifests)
    real_interval = template_interval_seconds(manifests)
    time_scale = real_interval / options.interval_seconds
    params = live_parameters(scenario, options.seed)
    profile = RateProfile(params, time_scale) if params.traffic_profile else None
    # Compress time, not evidence: an interval here should hold as many requests as one of the
    # template's real intervals (what the policy was trained on), as far as this machine allows.
    rps = live_request_rate(
        params.requests_per_second,
        time_scale,
        options.max_rps,
        profile.peak if profile is not None else 1.0,
    )
    run_dir = options.run_dir
    decision_env = {
        "ANALYSIS_WINDOW": format_duration(options.interval_seconds),
        **({"MODEL_PATH": options.model_path} if options.model_path else {}),
        **({"SLO_LATENCY": str(options.slo_latency_ms)} if options.slo_latency_ms else {}),
        **options.decision_env,
    }
    config = StackConfig(
        scenario=options.scenario,
        run_dir=run_dir,
        seed=options.seed,
        time_scale=time_scale,
        scenario_interval_seconds=real_interval,
        start_decision_service=options.decision_url is None,
        decision_url=options.decision_url,
        decision_env=decision_env,
        # Six scrapes per analysis window (docs/configuration.md asks for two at least): a
        # window still holds the two samples increase() needs after a scrape or two is lost to
        # a stalled machine, the canary's first window included.
        scrape_interval=format_duration(max(0.25, options.interval_seconds / 6)),
    )
    say(
        f"scenario {scenario.name} ({scenario.truth} canary): {scenario.description}\n"
        f"analysis interval {options.interval_seconds:g} s (template: {real_interval:g} s, "
        f"time x{time_scale:g}); load {rps:.0f} req/s"
        + (" x the traffic profile" if profile is not None else "")
        + f"; run folder {run_dir}"
    )
    events: list[Event] = []
    commands = CommandQueue()
    stop_watch = threading.Event()
    started = time.monotonic()
    timeline: Path | None = None
    with LocalStack(config) as stack:
        hashes = {track: app.pod_template_hash for track, app in stack.apps.items()}
        say(
            f"stack up in {time.monotonic() - started:.1f} s: stable {hashes['stable']}, "
            f"canary {hashes['canary']}, Prometheus {stack.prometheus_url}, "
            f"decision service {stack.decision_url}"
        )
        load = LoadGenerator(
            stack.apps["stable"].url,
            stack.apps["canary"].url,
            rps,
            seed=options.seed,
            profile=profile,
            canary_control_url=stack.apps["canary"].url + "/control/weight",
        )
        with load:
            time.sleep(options.warmup_intervals * options.interval_seconds)
            origin = load.started_at
            overrides = {"interval": format_duration(options.interval_seconds)}
            if options.count is not None:
                overrides["count"] = str(options.count)
            steps_total = len(manifests.only("Rollout")["spec"]["strategy"]["canary"]["steps"])

            def on_event(event: Event) -> None:
                events.append(event)
                line = format_event(event, origin, steps_total)
                if line:
                    say(line)

            template_url = manifests.only("AnalysisTemplate")["spec"]["metrics"][0]["provider"]
            host = httpx.URL(template_url["web"]["url"]).netloc.decode()
            local = httpx.URL(stack.decision_url).netloc.decode()
            control = run_dir / "control"
            control.unlink(missing_ok=True)
            watcher = threading.Thread(
                target=watch_control_file, args=(control, commands, stop_watch, say), daemon=True
            )
            watcher.start()
            if options.interactive:
                threading.Thread(
                    target=read_commands, args=(sys.stdin, commands, say), daemon=True
                ).start()
            try:
                with httpx.Client() as client:
                    canary_health = f"{stack.apps['canary'].url}/healthz"

                    def canary_ready() -> bool:
                        # Argo completes a setWeight once the canary pods are available.
                        return client.get(canary_health, timeout=2.0).status_code == 200

                    driver = RolloutDriver(
                        manifests,
                        client=client,
                        set_weight=load.set_weight,
                        stable_hash=hashes["stable"],
                        canary_hash=hashes["canary"],
                        secrets={TOKEN_SECRET: config.api_token},
                        arg_overrides=overrides,
                        host_overrides={host: local},
                        commands=commands,
                        on_event=on_event,
                        error_retry_seconds=ARGO_ERROR_RETRY_SECONDS / time_scale,
                        pause_timeout_seconds=options.pause_timeout,
                        time_scale=time_scale,
                        canary_ready=canary_ready,
                    )
                    verdict = driver.run()
            finally:
                stop_watch.set()
                watcher.join(timeout=2)
            time.sleep(min(1.0, options.interval_seconds))  # the last weight's traffic
        totals = {track: asdict(bucket) for track, bucket in load.totals().items()}
        totals["dropped"] = {"requests": load.dropped}
        served = totals["stable"]["requests"] + totals["canary"]["requests"]
        load_seconds = max(time.monotonic() - load.started_at, 1e-9)
        served_rps = served / load_seconds
        say(
            f"load: {served} requests in {load_seconds:.0f} s ({served_rps:.0f} req/s "
            f"of {rps:.0f} asked), {load.dropped} dropped at the in-flight limit"
        )
        warning = load_warning(served, load.dropped, rps, served_rps)
        if warning:
            say(warning)
        title = (
            f"{scenario.name}: {verdict.outcome} at {decided_at(verdict, events)} % "
            f"({sum(1 for e in events if e.kind == 'measurement')} measurements)"
        )
        _write_events(run_dir / "events.jsonl", events, origin)
        if options.plot:
            timeline = plot_timeline(
                run_dir / "timeline.png",
                events,
                dict(load.buckets),
                origin=origin,
                title=title,
                slo_ms=options.slo_latency_ms or Settings.model_fields["slo_latency"].default,
            )
    seconds = time.monotonic() - started
    say(
        f"stopped every process; {seconds:.0f} s in all"
        + (f"; timeline {timeline}" if timeline else "")
    )
    return DemoResult(
        verdict, events, seconds, run_dir, timeline, totals, rps, hashes, served_rps, warning
    )


def _write_events(path: Path, events: Sequence[Event], origin: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for e in events:
            record: dict[str, Any] = {
                "kind": e.kind,
                "t": round(e.time - origin, 3),
                "step": e.step,
                "weight": e.weight,
                "message": e.message,
                **e.data,
            }
            out.write(json.dumps(record, default=str) + "\n")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_apps.local.demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scenario", default="healthy", help="shipped name or scenario file")
    parser.add_argument("--seed", type=int, default=1, help="episode draw (both apps share it)")
    parser.add_argument("--interval", type=float, default=3.0, help="analysis interval, seconds")
    parser.add_argument("--count", type=int, default=None, help="measurements per step (patience)")
    parser.add_argument(
        "--max-rps", type=float, default=1500.0, help="cap on the scenario's load, req/s"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="default runs/demo/<scenario>")
    parser.add_argument("--decision-url", default=None, help="use a running decision service")
    parser.add_argument("--model", default=None, help="ONNX model (default: the service's)")
    parser.add_argument(
        "--pause-timeout",
        type=float,
        default=None,
        help="seconds to wait for promote/abort when paused (default 120 on a terminal, else 0)",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="do not write the timeline PNG (no matplotlib)"
    )
    args = parser.parse_args(argv)
    interactive = sys.stdin.isatty()
    scenario_name = Path(args.scenario).stem
    options = DemoOptions(
        scenario=args.scenario,
        seed=args.seed,
        interval_seconds=args.interval,
        count=args.count,
        max_rps=args.max_rps,
        run_dir=args.run_dir or REPO_ROOT / "runs" / "demo" / scenario_name,
        decision_url=args.decision_url,
        model_path=args.model,
        pause_timeout=args.pause_timeout
        if args.pause_timeout is not None
        else (120.0 if interactive else 0.0),
        interactive=interactive,
        plot=not args.no_plot,
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run_demo(options)
    except KeyboardInterrupt:
        print("interrupted: every process the demo started has been stopped", file=sys.stderr)
        return 130
    print(f"verdict: {result.verdict.outcome} ({result.verdict.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
