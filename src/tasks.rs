//! Background tasks, supervised: each long-running task is spawned by name. One that panics is
//! logged and started again after a pause that grows while it keeps panicking (readiness fails
//! while it is down, and lists its restarts); one that stops before shutdown for any other
//! reason is logged and reported (readiness fails with its name). Never silently gone. Short tasks the service must not lose mid-way (provisioning a
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

/// The pause before the first restart of a task that panicked; it doubles while the task keeps
/// panicking soon after each start, up to [`RESTART_DELAY_MAX`].
const RESTART_DELAY_FIRST: Duration = Duration::from_secs(1);
const RESTART_DELAY_MAX: Duration = Duration::from_secs(60);

/// A task that panicked and was started again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct TaskRestart {
    pub task: &'static str,
    /// Restarts so far.
    pub count: u32,
    /// The latest panic's message.
    pub last_reason: String,
    /// When that panic happened (epoch ms).
    pub last_at: i64,
    /// Whether the task is waiting to be started again right now.
    pub down: bool,
}

#[derive(Clone)]
pub struct Tasks {
    shutdown: CancellationToken,
    /// Long-running tasks, by name, with their supervisors.
    running: Arc<Mutex<Supervised>>,
    /// Tasks that ended before shutdown, with why.
    dead: Arc<Mutex<Vec<String>>>,
    /// Tasks that panicked and were restarted.
    restarts: Arc<Mutex<Vec<TaskRestart>>>,
    /// Told of every panic, as it is counted (the service makes it an event).
    on_restart: RestartHook,
    /// Short tasks shutdown waits for.
    tracked: TaskTracker,
}

/// What is told of a task's panic.
pub type RestartHook = Arc<dyn Fn(&TaskRestart) + Send + Sync>;

impl Tasks {
    pub fn new(shutdown: CancellationToken, on_restart: RestartHook) -> Self {
        Self {
            shutdown,
            running: Arc::default(),
            dead: Arc::default(),
            restarts: Arc::default(),
            on_restart,
            tracked: TaskTracker::new(),
        }
    }

    /// Runs the task `start` makes for the life of the service, making a new one after a
    /// panic. A task is expected to return only once shutdown is requested; anything else is
    /// reported.
    pub fn spawn_service<M, F>(&self, name: &'static str, start: M)
    where
        M: Fn() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let dead = Arc::clone(&self.dead);
        let restarts = Arc::clone(&self.restarts);
        let on_restart = Arc::clone(&self.on_restart);
        let supervisor = tokio::spawn(async move {
            let mut delay = RESTART_DELAY_FIRST;
            loop {
                let started = tokio::time::Instant::now();
                let why = match tokio::spawn(start()).await {
                    Ok(()) if shutdown.is_cancelled() => return,
                    Ok(()) => "stopped on its own".to_string(),
                    Err(e) if e.is_panic() => {
                        let reason = panic_text(e);
                        if started.elapsed() > RESTART_DELAY_MAX {
                            delay = RESTART_DELAY_FIRST;
                        }
                        tracing::error!(task = name, %reason, restart_in_s = delay.as_secs_f64(), "background task panicked; starting it again");
                        on_restart(&record_restart(&restarts, name, reason));
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(RESTART_DELAY_MAX);
                        mark_up(&restarts, name);
                        continue;
                    }
                    Err(e) => format!("was cancelled: {e}"),
                };
                tracing::error!(task = name, reason = %why, "background task ended; the service is not ready");
                dead.lock()
                    .expect("tasks lock")
                    .push(format!("{name} {why}"));
                return;
            }
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

    /// Tasks that panicked and were started again (or are about to be).
    pub fn restarts(&self) -> Vec<TaskRestart> {
        self.restarts.lock().expect("tasks lock").clone()
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

/// Counts a panic of `task`, which is down until [`mark_up`]; answers the count as it is now.
fn record_restart(
    restarts: &Mutex<Vec<TaskRestart>>,
    task: &'static str,
    reason: String,
) -> TaskRestart {
    let mut restarts = restarts.lock().expect("tasks lock");
    let at = crate::domain::now_millis();
    let i = match restarts.iter().position(|r| r.task == task) {
        Some(i) => i,
        None => {
            restarts.push(TaskRestart {
                task,
                count: 0,
                last_reason: String::new(),
                last_at: at,
                down: true,
            });
            restarts.len() - 1
        }
    };
    let r = &mut restarts[i];
    r.count += 1;
    r.last_reason = reason;
    r.last_at = at;
    r.down = true;
    r.clone()
}

fn mark_up(restarts: &Mutex<Vec<TaskRestart>>, task: &'static str) {
    if let Some(r) = restarts
        .lock()
        .expect("tasks lock")
        .iter_mut()
        .find(|r| r.task == task)
    {
        r.down = false;
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
    async fn a_task_that_stops_early_is_reported_and_one_that_stops_at_shutdown_is_not() {
        let token = CancellationToken::new();
        let tasks = Tasks::new(token.clone(), Arc::new(|_: &TaskRestart| {}));
        tasks.spawn_service("quitter", || async {});
        let waiter = token.clone();
        tasks.spawn_service("good", move || {
            let waiter = waiter.clone();
            async move { waiter.cancelled().await }
        });
        let dead = eventually(&tasks, 1).await;
        assert_eq!(dead, ["quitter stopped on its own"]);
        token.cancel();
        tasks.join(Duration::from_secs(5)).await;
        assert_eq!(tasks.dead().len(), 1);
    }

    #[tokio::test]
    async fn a_task_that_panics_is_started_again_and_its_restart_reported() {
        let token = CancellationToken::new();
        let told = Arc::new(Mutex::new(Vec::new()));
        let hook = Arc::clone(&told);
        let tasks = Tasks::new(
            token.clone(),
            Arc::new(move |r: &TaskRestart| hook.lock().unwrap().push(r.clone())),
        );
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (counter, waiter) = (Arc::clone(&starts), token.clone());
        tasks.spawn_service("flaky", move || {
            let first = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            let waiter = waiter.clone();
            async move {
                assert!(!first, "monitor broke");
                waiter.cancelled().await;
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while starts.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "not started again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let restarts = tasks.restarts();
        assert_eq!(restarts.len(), 1);
        assert_eq!((restarts[0].task, restarts[0].count), ("flaky", 1));
        assert_eq!(restarts[0].last_reason, "monitor broke");
        let told = told.lock().unwrap().clone();
        assert_eq!(told.len(), 1);
        assert_eq!(
            (told[0].task, told[0].count, told[0].down),
            ("flaky", 1, true)
        );
        assert!(tasks.dead().is_empty());
        token.cancel();
        tasks.join(Duration::from_secs(5)).await;
        assert!(tasks.dead().is_empty());
    }

    #[tokio::test]
    async fn shutdown_waits_for_tracked_work_up_to_its_deadline() {
        let token = CancellationToken::new();
        let tasks = Tasks::new(token.clone(), Arc::new(|_: &TaskRestart| {}));
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
