//! A client that counts acknowledged writes: it inserts sequential ids through HAProxy's
//! read-write port, one connection per transaction as a pooled application would, and records
//! every id whose commit was acknowledged together with the server that acknowledged it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The table the writer inserts into (created by [`Writer::create_table`]).
pub const TABLE: &str = "pgmetal_acked";

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The id inserted.
    pub id: u64,
    /// The address of the server that acknowledged it (`inet_server_addr()`).
    pub server: String,
    /// When the acknowledgement arrived, since the writer started.
    pub at: Duration,
}

/// Where and how to write.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub password: String,
}

impl Target {
    fn psql(&self, sql: &str, timeout_secs: u32) -> Result<(String, String), String> {
        super::psql_with_stderr(&self.host, self.port, &self.password, sql, timeout_secs)
    }

    /// Every id in the table, read through this target (the primary).
    pub fn stored_ids(&self) -> Result<std::collections::BTreeSet<u64>, String> {
        let (out, _) = self.psql(&format!("SELECT id FROM {TABLE}"), 30)?;
        out.lines()
            .map(|l| l.trim().parse::<u64>().map_err(|e| format!("{l}: {e}")))
            .collect()
    }
}

/// A running writer thread.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<Mutex<Vec<Duration>>>,
    started: Instant,
    thread: Option<JoinHandle<()>>,
    pub target: Target,
}

impl Writer {
    /// Creates the table (idempotent) through the target.
    pub fn create_table(target: &Target) {
        target
            .psql(
                &format!("CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())"),
                30,
            )
            .expect("create the writer's table");
    }

    /// Starts inserting ids from `first_id` upward, one connection per transaction.
    pub fn start(target: Target, first_id: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, a, f, t) = (stop.clone(), acks.clone(), failures.clone(), target.clone());
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut id = first_id;
            while !s.load(Ordering::Relaxed) {
                let sql =
                    format!("INSERT INTO {TABLE}(id) VALUES ({id}) RETURNING inet_server_addr()");
                match t.psql(&sql, 10) {
                    // A WARNING means the commit's wait for a synchronous standby was cut short:
                    // the client was told, so it is not counted as acknowledged.
                    Ok((server, err)) if !err.contains("WARNING") && !server.is_empty() => {
                        let server = server.split('/').next().unwrap_or_default().to_string();
                        a.lock().unwrap().push(Ack {
                            id,
                            server,
                            at: started.elapsed(),
                        });
                    }
                    _ => {
                        f.lock().unwrap().push(started.elapsed());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                id += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Writer {
            stop,
            acks,
            failures,
            started,
            thread: Some(thread),
            target,
        }
    }

    /// A copy of the acknowledgements so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Failed attempts so far.
    pub fn failures(&self) -> u64 {
        self.failures.lock().unwrap().len() as u64
    }

    /// When each failed attempt ended, since the writer started.
    pub fn failure_times(&self) -> Vec<Duration> {
        self.failures.lock().unwrap().clone()
    }

    /// Now, on the writer's clock (what [`Ack::at`] is measured on).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `pred` holds for the acknowledgements, or panics after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&[Ack]) -> bool) -> f64 {
        self.try_wait_for(what, timeout, pred)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until `pred` holds for the acknowledgements; after `timeout`, says what was seen.
    pub fn try_wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Ack]) -> bool,
    ) -> Result<f64, String> {
        let t = Instant::now();
        loop {
            if pred(&self.acks.lock().unwrap()) {
                return Ok(t.elapsed().as_secs_f64());
            }
            if t.elapsed() >= timeout {
                return Err(format!(
                    "{what}: not within {timeout:?} (acks {}, failures {})",
                    self.acks.lock().unwrap().len(),
                    self.failures()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the writer and returns every acknowledgement.
    pub fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        self.acks()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The write outage a client saw after a disruption at `at`: from the last acknowledgement
/// before the first failed write after `at`, to the first acknowledgement after that failure.
/// Not measured from `at` itself: a write in flight often commits just after it. None when no
/// write failed.
pub fn outage(acks: &[Ack], failures: &[Duration], at: Duration) -> Option<f64> {
    let first_fail = *failures.iter().find(|f| **f > at)?;
    let before = acks.iter().rev().find(|a| a.at < first_fail)?.at;
    let after = acks.iter().find(|a| a.at > first_fail)?.at;
    Some((after - before).as_secs_f64())
}

/// Min, median and max of `xs`, formatted in seconds.
pub fn spread(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "-".into();
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    format!("{:.1}/{:.1}/{:.1}", v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Acknowledged ids that are missing from `stored`, grouped by the server that acknowledged them.
pub fn lost_by_server(
    acks: &[Ack],
    stored: &std::collections::BTreeSet<u64>,
) -> BTreeMap<String, Vec<u64>> {
    let mut lost: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for a in acks.iter().filter(|a| !stored.contains(&a.id)) {
        lost.entry(a.server.clone()).or_default().push(a.id);
    }
    lost
}
