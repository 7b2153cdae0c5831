//! Background tasks, supervised: each long-running task is spawned by name, and one that
//! panics or stops before shutdown is logged and reported (readiness fails with its name),
//! never silently gone. Short tasks the service must not lose mid-way (provisioning a
//! HostFactory request) are tracked, so that shutdown waits for them, up to a deadline,
//! before the store closes.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Long-running tasks by name, each with the supervisor that watches it.
type Supervised = Vec<(&'static str, JoinHandle<()>)>;

#[derive(Clone)]
pub struct Tasks {
    shutdown: CancellationToken,
    /// Long-running tasks, by name, with their supervisors.
    running: Arc<Mutex<Supervised>>,
    /// Tasks that ended before shutdown, with why.
    dead: Arc<Mutex<Vec<String>>>,
    /// Short tasks shutdown waits for.
    tracked: TaskTracker,
}

impl Tasks {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            running: Arc::default(),
            dead: Arc::default(),
            tracked: TaskTracker::new(),
        }
    }

    /// Runs `task` for the life of the service. It is expected to return only once shutdown
    /// is requested; anything else is reported.
    pub fn spawn_service<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = tokio::spawn(task);
        let shutdown = self.shutdown.clone();
        let dead = Arc::clone(&self.dead);
        let supervisor = tokio::spawn(async move {
            let why = match inner.await {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => "stopped on its own".to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e)),
                Err(e) => format!("was cancelled: {e}"),
            };
            tracing::error!(task = name, reason = %why, "background task ended; the service is not ready");
            dead.lock()
                .expect("tasks lock")
                .push(format!("{name} {why}"));
        });
        self.running
            .lock()
            .expect("tasks lock")
            .push((name, supervisor));
    }

    /// Runs a short task that shutdown waits for.
    pub fn spawn_tracked<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracked.spawn(task);
    }

    /// Background tasks that are gone, with why; empty while all is well.
    pub fn dead(&self) -> Vec<String> {
        self.dead.lock().expect("tasks lock").clone()
    }

    /// After shutdown was requested: waits for the long-running tasks, then up to `deadline`
    /// for tracked ones, naming what did not finish.
    pub async fn join(&self, deadline: Duration) {
        let running: Vec<_> = std::mem::take(&mut *self.running.lock().expect("tasks lock"));
        for (name, supervisor) in running {
            if let Err(e) = supervisor.await {
                tracing::error!(task = name, error = %e, "supervisor of a background task failed");
            }
        }
        self.tracked.close();
        if tokio::time::timeout(deadline, self.tracked.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                unfinished = self.tracked.len(),
                deadline_s = deadline.as_secs_f64(),
                "tracked tasks still running at shutdown; their work resumes at the next start"
            );
        }
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn eventually(tasks: &Tasks, want: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let dead = tasks.dead();
            if dead.len() >= want || tokio::time::Instant::now() > deadline {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_or_stops_early_is_reported_and_one_that_stops_at_shutdown_is_not() {
        let token = CancellationToken::new();
        let tasks = Tasks::new(token.clone());
        tasks.spawn_service("boom", async { panic!("monitor broke") });
        tasks.spawn_service("quitter", async {});
        let waiter = token.clone();
        tasks.spawn_service("good", async move { waiter.cancelled().await });
        let dead = eventually(&tasks, 2).await;
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert!(
            dead.iter().any(|d| d == "boom panicked: monitor broke"),
            "{dead:?}"
        );
        assert!(
            dead.iter().any(|d| d == "quitter stopped on its own"),
            "{dead:?}"
        );
        token.cancel();
        tasks.join(Duration::from_secs(5)).await;
        assert_eq!(tasks.dead().len(), 2);
    }

    #[tokio::test]
    async fn shutdown_waits_for_tracked_work_up_to_its_deadline() {
        let token = CancellationToken::new();
        let tasks = Tasks::new(token.clone());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&done);
        tasks.spawn_tracked(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        tasks.spawn_tracked(std::future::pending());
        token.cancel();
        tasks.join(Duration::from_secs(2)).await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
