#!/usr/bin/env python3
"""Renders the Grafana dashboard (monitoring/grafana/dashboards/pipeline.json) with a real run's
data into docs/dashboard.png, for the README.

It runs the pipeline for real: the embedded broker, a producer and a processor (each with its
metrics endpoint), and Prometheus (Debian's package) scraping them every 2 s. Then it asks
Prometheus for every panel's queries, exactly as the dashboard writes them (the $dataset and $topic
variables at "All"), over the run, and draws each panel where its gridPos puts it, with its title,
legend names, unit and right-hand axis overrides (matplotlib, Grafana's dark colours).

  python3 scripts/render-dashboard.py [--seconds 240] [--out docs/dashboard.png]

Needs a release build (cargo build --release --bin pipeline; PIPELINE_BIN names another binary),
prometheus on the PATH, and matplotlib (pip install matplotlib).
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(REPO, "monitoring/grafana/dashboards/pipeline.json")
# Grafana's dark theme and its classic palette.
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a"]
UNITS = {"rowsps": "rows/s", "s": "seconds", "short": ""}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def wait_for(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"render-dashboard: {what} did not come up in {seconds} s")


def run(seconds, work, procs):
    """Starts broker, producer, processor and Prometheus (into `procs`, which the caller stops);
    returns (prometheus URL, start, end)."""
    binary = os.environ.get("PIPELINE_BIN", os.path.join(REPO, "target/release/pipeline"))
    if not os.path.exists(binary):
        sys.exit(f"render-dashboard: {binary} is missing: cargo build --release --bin pipeline")
    # A clean environment: no setting of the user's changes the run (the work folder has no .env).
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env["RUST_LOG"] = "info"

    def spawn(args, log, **kw):
        p = subprocess.Popen([binary] + args, cwd=work, env=env,
                             stderr=open(os.path.join(work, log), "w"), **kw)
        procs.append(p)
        return p

    # The broker reads fault commands on its stdin: give it none.
    broker = spawn(["broker", "--kafka-topic-partitions", "3"], "broker.log",
                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    line = broker.stdout.readline()
    if not line.startswith("bootstrap="):
        sys.exit(f"render-dashboard: the broker said {line!r}")
    bootstrap = line.strip().split("=", 1)[1]
    ports = {"producer": free_port(), "processor": free_port()}
    prom_port = free_port()
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nscrape_configs:\n")
        for job, port in ports.items():
            f.write(f"  - job_name: {job}\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{port}']\n")
    procs.append(subprocess.Popen(
        ["prometheus", f"--config.file={work}/prometheus.yml",
         f"--storage.tsdb.path={work}/tsdb", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "prometheus.log"), "w")))
    prometheus = f"http://127.0.0.1:{prom_port}"
    wait_for("prometheus", lambda: urllib.request.urlopen(prometheus + "/-/ready").status == 200)
    start = time.time()
    spawn(["processor", "--kafka-bootstrap-servers", bootstrap, "--output-path",
           os.path.join(work, "out"), "--trigger-interval", "2 seconds", "--starting-offsets",
           "earliest", "--metrics-addr", f"127.0.0.1:{ports['processor']}"], "processor.log")
    # A steady stream with some bad and late records, so that every panel has something to show.
    spawn(["producer", "--kafka-bootstrap-servers", bootstrap, "--producer-msgs-per-sec", "2000",
           "--producer-bad-ratio", "0.01", "--producer-late-ratio", "0.01",
           "--metrics-addr", f"127.0.0.1:{ports['producer']}"], "producer.log")
    print(f"render-dashboard: running for {seconds} s (logs in {work})", flush=True)
    time.sleep(seconds)
    end = time.time()
    return prometheus, start, end


def query_range(prometheus, expr, start, end, step):
    expr = expr.replace("$dataset", ".*").replace("$topic", ".*")
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    answer = get(f"{prometheus}/api/v1/query_range?{q}")
    if answer.get("status") != "success":
        sys.exit(f"render-dashboard: {expr}: {answer}")
    return answer["data"]["result"]


def legend(fmt, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "") \
        or json.dumps(labels)


def render(dashboard, prometheus, start, end, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter
    from datetime import datetime, timezone

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    # Grafana's grid: 24 columns, 30 px per row unit; a header strip on top.
    width, unit, header = 1600, 30, 50
    height = rows * unit + header
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100, facecolor=BACKGROUND)
    fig.text(0.01, 1 - 18 / height, dashboard.get("title", "dashboard"), color=TEXT,
             fontsize=14, va="top")
    fig.text(0.99, 1 - 18 / height,
             "dataset: All · topic: All · last {:.0f} minutes of a real run".format(
                 (end - start) / 60), color="#8e8e8e", fontsize=10, va="top", ha="right")
    step = max(2, int((end - start) / 200))
    for panel in panels:
        g = panel["gridPos"]
        pad = 6
        left = (g["x"] * width / 24 + pad + 48) / width
        bottom = 1 - (header + (g["y"] + g["h"]) * unit - pad - 22) / height
        w = (g["w"] * width / 24 - 2 * pad - 48 - (48 if g["w"] == 24 else 16)) / width
        h = (g["h"] * unit - 2 * pad - 60) / height
        # The panel's card, then its plot.
        card = fig.add_axes([(g["x"] * width / 24 + pad / 2) / width,
                             1 - (header + (g["y"] + g["h"]) * unit - pad / 2) / height,
                             (g["w"] * width / 24 - pad) / width,
                             (g["h"] * unit - pad) / height])
        card.set_facecolor(PANEL)
        card.set_xticks([])
        card.set_yticks([])
        for spine in card.spines.values():
            spine.set_color(GRID)
        card.text(0.01, 0.97, panel["title"], color=TEXT, fontsize=10, va="top",
                  transform=card.transAxes)
        ax = fig.add_axes([left, bottom, w, h])
        right = None
        unit_name = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        overrides = {}
        for o in panel.get("fieldConfig", {}).get("overrides", []):
            if o["matcher"]["id"] == "byFrameRefID":
                props = {p["id"]: p["value"] for p in o["properties"]}
                overrides[o["matcher"]["options"]] = props
        colour = 0
        for target in panel["targets"]:
            props = overrides.get(target.get("refId"), {})
            on = ax
            if props.get("custom.axisPlacement") == "right":
                if right is None:
                    right = ax.twinx()
                    right.tick_params(colors=TEXT, labelsize=8)
                    right.set_ylabel(UNITS.get(props.get("unit", "short"), ""), color=TEXT,
                                     fontsize=8)
                on = right
            for series in query_range(prometheus, target["expr"], start, end, step):
                points = [(datetime.fromtimestamp(float(t), timezone.utc), float(v))
                          for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                if not points:
                    continue
                on.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2,
                        color=PALETTE[colour % len(PALETTE)],
                        label=legend(target.get("legendFormat"), series["metric"]))
                colour += 1
        for a in [ax] + ([right] if right else []):
            a.set_facecolor(PANEL)
            for spine in a.spines.values():
                spine.set_visible(False)
        ax.grid(color=GRID, linewidth=0.6)
        ax.tick_params(colors=TEXT, labelsize=8)
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
        ax.set_ylabel(UNITS.get(unit_name, ""), color=TEXT, fontsize=8)
        ax.set_ylim(bottom=0)
        if right:
            right.set_ylim(bottom=0)
        handles, labels = ax.get_legend_handles_labels()
        if right:
            more = right.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        if handles:
            ax.legend(handles, labels, loc="upper left", fontsize=7, frameon=False,
                      labelcolor=TEXT, ncol=min(4, len(handles)))
        else:
            ax.text(0.5, 0.5, "No data", color="#8e8e8e", ha="center", va="center",
                    transform=ax.transAxes)
    fig.savefig(out, facecolor=BACKGROUND)
    print(f"render-dashboard: {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=240)
    parser.add_argument("--out", default=os.path.join(REPO, "docs/dashboard.png"))
    args = parser.parse_args()
    dashboard = json.load(open(DASHBOARD))
    try:
        import matplotlib  # noqa: F401  (checked before a run of minutes)
    except ImportError:
        sys.exit("render-dashboard: matplotlib is needed: pip install matplotlib")
    work = tempfile.mkdtemp(prefix="render-dashboard-")
    procs = []
    try:
        prometheus, start, end = run(args.seconds, work, procs)
        render(dashboard, prometheus, start, end, args.out)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
