//! The binaries run as processes: producer and processor runs, a processor whose log lines
//! arrive on a channel, and the SIGKILL loop of the crash tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

/// A command for a subcommand of `pipeline`, run in `cwd` so that no `.env` is picked up.
pub fn command(sub: &str, cwd: &Path) -> Command {
    let mut c = Command::new(exe());
    c.arg(sub).current_dir(cwd).env_remove("RUST_LOG");
    for var in [
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TOPIC",
        "MSGS_PER_SEC",
        "PRODUCER_MSGS_PER_SEC",
        "KAFKA_TOPIC_PARTITIONS",
        "EXTRA_TOPICS",
        "OUTPUT_PATH",
        "OUTPUT_FORMAT",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ALLOW_HTTP",
        "STARTING_OFFSETS",
        "FAIL_ON_DATA_LOSS",
        "SHOW_PREVIEWS",
        "TRIGGER_INTERVAL",
        "MAX_FILES_PER_SINK",
        "MAX_OFFSETS_PER_TRIGGER",
        "SPARK_CHECKPOINT_DIR",
        "CHECKPOINT_DIR",
        "METRICS_ADDR",
        "LOG_FORMAT",
        "KAFKA_CONFIG_FILE",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CA_LOCATION",
        "PRODUCER_COMPRESSION",
        "ENV_FILE",
    ] {
        c.env_remove(var);
    }
    c
}

pub fn run_producer(bootstrap: &str, cwd: &Path, args: &[&str]) -> Output {
    let out = command("producer", cwd)
        .args(["--bootstrap-servers", bootstrap, "--log-every", "100000"])
        .args(args)
        .output()
        .expect("run producer");
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A producer running in the background, its stderr piped (for [`summary_field`]).
pub fn spawn_producer(bootstrap: &str, cwd: &Path, args: &[&str]) -> Child {
    command("producer", cwd)
        .args(["--bootstrap-servers", bootstrap, "--log-every", "100000"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer")
}

/// The value of `name=` in the producer's summary line.
pub fn summary_field(stderr: &[u8], name: &str) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.contains("[producer] done:"))
        .expect("summary line");
    let key = format!("{name}=");
    let at = line.find(&key).expect("field in summary") + key.len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs the processor with available-now from the earliest offsets until it exits.
pub fn process_all(bootstrap: &str, out: &Path, extra: &[&str]) -> Output {
    process_all_with(bootstrap, out, extra, &[])
}

/// [`process_all`] with env variables.
pub fn process_all_with(
    bootstrap: &str,
    out: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    let mut cmd = command("processor", out);
    cmd.args([
        "--bootstrap-servers",
        bootstrap,
        "--trigger",
        "available-now",
    ]);
    if !extra.contains(&"--starting-offsets") {
        cmd.args(["--starting-offsets", "earliest"]);
    }
    if !extra.contains(&"--output-path") {
        cmd.arg("--output-path").arg(out);
    }
    let output = cmd
        .args(extra)
        .envs(envs.iter().copied())
        .output()
        .expect("run processor");
    assert!(
        output.status.success(),
        "processor failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The processor with available-now (from the checkpoint, else `extra`'s or the latest offsets),
/// whatever its exit: for the runs expected to fail.
pub fn process_unchecked(bootstrap: &str, out: &Path, extra: &[&str]) -> Output {
    command("processor", out)
        .args([
            "--bootstrap-servers",
            bootstrap,
            "--trigger",
            "available-now",
        ])
        .arg("--output-path")
        .arg(out)
        .args(extra)
        .output()
        .expect("run processor")
}

/// How a crash test kills the processor: `runs` runs, each SIGKILLed; every `pause_every`th
/// (runs 1, 1 + n, ...) right after its sinks committed a batch and before its checkpoint did
/// (TEST_PAUSE_BEFORE_COMMIT = `pause`; in a group, before the roll forward), the others at a
/// random moment `settle_ms` to `settle_ms + spread_ms` after they began connecting.
#[derive(Clone, Copy, Debug)]
pub struct Kills {
    pub runs: usize,
    pub pause_every: usize,
    pub pause: &'static str,
    pub settle_ms: u64,
    pub spread_ms: u64,
}

impl Kills {
    pub fn runs(runs: usize) -> Self {
        Kills {
            runs,
            pause_every: 2,
            pause: "400 ms",
            settle_ms: 50,
            spread_ms: 1200,
        }
    }

    pub fn pause_every(self, pause_every: usize, pause: &'static str) -> Self {
        Kills {
            pause_every,
            pause,
            ..self
        }
    }

    pub fn after_connecting(self, settle_ms: u64, spread_ms: u64) -> Self {
        Kills {
            settle_ms,
            spread_ms,
            ..self
        }
    }
}

/// The processor started and SIGKILLed as `kills` says. Returns how many runs were killed at
/// the pause, and the stderr lines of every run.
pub fn kill_repeatedly(
    bootstrap: &str,
    out: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    kills: Kills,
) -> (usize, Vec<String>) {
    kill_repeatedly_with(bootstrap, out, args, envs, kills, |_| false)
}

/// [`kill_repeatedly`], with `own_run(i)` called before run i: when it returns true it did
/// something else with that run (killed a broker under a running processor, say) and the loop
/// starts no processor for it.
pub fn kill_repeatedly_with(
    bootstrap: &str,
    out: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    kills: Kills,
    mut own_run: impl FnMut(usize) -> bool,
) -> (usize, Vec<String>) {
    let (mut at_pause, mut lines) = (0, Vec::new());
    for run in 0..kills.runs {
        if own_run(run) {
            continue;
        }
        let pause = run % kills.pause_every == 1;
        let mut run_envs = envs.to_vec();
        if pause {
            run_envs.push(("TEST_PAUSE_BEFORE_COMMIT", kills.pause));
        }
        let p = Processor::spawn(bootstrap, out, args, &run_envs);
        if pause {
            if let Some(line) = p.wait_for("test pause before the", Duration::from_secs(30)) {
                at_pause += 1;
                lines.push(line);
            }
        } else {
            p.wait_for("Connecting to", Duration::from_secs(20));
            let ms = kills.settle_ms + rand_u64() % kills.spread_ms.max(1);
            std::thread::sleep(Duration::from_millis(ms));
        }
        p.signal(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(200));
        lines.extend(p.lines.try_iter());
        p.wait();
    }
    (at_pause, lines)
}

/// A processor child whose stderr lines arrive on a channel.
pub struct Processor {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Processor {
    /// A processor writing to `out`, unless `args` name another `--output-path`.
    pub fn spawn(bootstrap: &str, out: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = command("processor", out);
        cmd.args([
            "--bootstrap-servers",
            bootstrap,
            "--starting-offsets",
            "earliest",
        ]);
        if !args.contains(&"--output-path") {
            cmd.arg("--output-path").arg(out);
        }
        let mut child = cmd
            .args(args)
            .envs(envs.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn processor");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Processor { child, lines: rx }
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }

    /// Waits for the exit, then takes the lines not read yet (to the end of its stderr).
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().unwrap();
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        (status, lines)
    }
}

impl Drop for Processor {
    /// A test that failed half-way leaves no processor behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
