"""`python -m bench`: every measurement, printed and written to docs/performance.md (+ .png)."""

from __future__ import annotations

import os

from bench import report, sections
from bench.harness import bench
from bench.stats import ms
from clinvk_core.config import WARM_BY_DEFAULT


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS", "20"))
    with bench() as b:
        print(f"overhead ({runs} runs per cell)...", flush=True)
        overhead = sections.overhead(b, runs)
        for row in overhead:
            print(f"  {row.backend:6} {'stream' if row.stream else 'buffered':8} bare {ms(row.bare.median)} ms, "
                  f"gateway {ms(row.gateway.median)} ms, +{ms(row.added)} ms, x{row.ratio:.3f}")  # fmt: skip
        print("overhead on a stand-in CLI (no CLI noise)...", flush=True)
        floor = sections.floor(b, runs * 2)
        for row in floor:
            print(f"  {'stream' if row.stream else 'buffered':8} bare {ms(row.bare.median)} ms, "
                  f"gateway {ms(row.gateway.median)} ms, +{ms(row.added)} ms")  # fmt: skip
        print("warm: CLIs started ahead, against cold runs and the bare CLI...", flush=True)
        warm = sections.warm_vs_cold(b, runs, WARM_BY_DEFAULT)
        for w in warm:
            print(f"  {w.backend:6} bare {ms(w.bare.median)} ms | cold first {ms(w.cold_first.median)} / end "
                  f"{ms(w.cold_end.median)} ms | warm first {ms(w.warm_first.median)} / end "
                  f"{ms(w.warm_end.median)} ms (upstream reached at {ms(w.warm_upstream.median)} ms)")  # fmt: skip
        print("client tools: with and without one declared tool...", flush=True)
        tools = sections.tool_bridge(b, runs)
        for cost in tools:
            print(f"  {cost.backend:6} without {ms(cost.plain.median)} ms, with one tool "
                  f"{ms(cost.with_tool.median)} ms, +{ms(cost.added)} ms")  # fmt: skip
        print("relay delay...", flush=True)
        relay = sections.relay(b, runs)
        print(f"  p50 {ms(relay.median)} ms, p90 {ms(relay.p90)} ms")
        print("cold start...", flush=True)
        cold = sections.cold_start(b, max(5, runs // 2))
        framework = sections.framework_import(max(5, runs // 2))
        print(f"  fastapi + mangum alone: import {ms(framework.median)} ms")
        for start in cold:
            print(f"  handlers.{start.module}: import {ms(start.import_time.median)} ms, "
                  f"first request {ms(start.first_request.median)} ms")  # fmt: skip
        print("scaling...", flush=True)
        scale = sections.scaling(b)
        for level in scale:
            print(f"  {level.concurrency:2} concurrent: {level.throughput:.2f} req/s, "
                  f"p50 {ms(level.latency.median)} ms, errors {level.errors}, "
                  f"{level.rss_per_request_kib:.0f} KiB/request")  # fmt: skip
        print("start-up cuts...", flush=True)
        cuts = sections.startup_cuts(b, runs)
        for cut in cuts:
            print(f"  {cut.name}: {ms(cut.before.median)} -> {ms(cut.after.median)} ms ({cut.note})")
        page = report.write(overhead, floor, warm, tools, relay, cold, framework, scale, cuts, runs)
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
