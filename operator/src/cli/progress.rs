//! Progress for people: a live bar per host on a terminal, plain timestamped lines otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::engine::Progress;

/// Chooses the terminal UI when stderr is a terminal.
pub fn for_stderr(hosts: &[String], quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(crate::engine::Quiet)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new(hosts))
    } else {
        Box::new(Lines {
            start: Instant::now(),
        })
    }
}

/// One line per event on stderr.
pub struct Lines {
    start: Instant,
}

impl Lines {
    fn say(&self, msg: String) {
        eprintln!("[{:>6.1}s] {msg}", self.start.elapsed().as_secs_f64());
    }
}

impl Progress for Lines {
    fn phase(&self, name: &str) {
        self.say(format!("== {name}"));
    }
    fn step(&self, host: &str, step: &str) {
        self.say(format!("{host}: {step}"));
    }
    fn host_done(&self, host: &str, error: Option<&str>) {
        if let Some(e) = error {
            self.say(format!("{host}: FAILED: {e}"));
        }
    }
}

/// A spinner per host showing its current step, under a phase line.
pub struct Bars {
    _multi: MultiProgress,
    phase: ProgressBar,
    hosts: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Bars {
    fn new(hosts: &[String]) -> Self {
        let multi = MultiProgress::new();
        let style =
            ProgressStyle::with_template("{spinner} {prefix:<18} [{elapsed:>4}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let phase = multi.add(
            ProgressBar::new_spinner()
                .with_style(style.clone())
                .with_prefix("phase"),
        );
        phase.enable_steady_tick(Duration::from_millis(120));
        let bars = hosts
            .iter()
            .map(|h| {
                let b = multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style.clone())
                        .with_prefix(h.clone()),
                );
                b.enable_steady_tick(Duration::from_millis(120));
                (h.clone(), b)
            })
            .collect();
        Bars {
            _multi: multi,
            phase,
            hosts: Mutex::new(bars),
        }
    }

    fn with(&self, host: &str, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.hosts.lock().ok().as_ref().and_then(|m| m.get(host)) {
            f(b);
        }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str) {
        self.phase.set_message(name.to_string());
    }
    fn step(&self, host: &str, step: &str) {
        self.with(host, |b| b.set_message(step.to_string()));
    }
    fn host_done(&self, host: &str, error: Option<&str>) {
        self.with(host, |b| {
            b.set_message(error.map_or("done".to_string(), |e| format!("FAILED: {e}")))
        });
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.phase.finish_and_clear();
        if let Ok(m) = self.hosts.lock() {
            m.values().for_each(ProgressBar::finish);
        }
    }
}
