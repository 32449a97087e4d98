//! CPU work that must not slow the web form down.
//!
//! Rendering, zipping and composing a report take milliseconds to tens of
//! milliseconds of CPU each. `serve` does them for every request while it
//! answers the form, and on a small machine under load they would compete
//! with the form's handlers for the same cores. They run here instead: on
//! one thread of their own, at a lower CPU priority (nice 10), in order,
//! so the scheduler serves the form first and the reports wait (they are
//! mailed, nobody watches them being made).

use std::sync::OnceLock;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// How much nicer than the rest of the process the thread is.
const NICE: i32 = 10;

fn queue() -> anyhow::Result<&'static mpsc::Sender<Job>> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    if let Some(q) = QUEUE.get() {
        return Ok(q);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("mailtrail-render".into())
        .spawn(move || {
            lower_priority();
            for job in rx {
                job();
            }
        })?;
    // Two callers racing here both spawn; the loser's thread ends as soon
    // as its sender, dropped here, is gone.
    Ok(QUEUE.get_or_init(|| tx))
}

/// Lowers the calling thread's priority. On Linux, nice is per thread;
/// elsewhere (or if refused) the work simply runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain integers and touch only
    // the calling thread's scheduling attributes.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
    }
}

/// Runs `f` on the background thread and waits for its result. A panic
/// in `f` is returned as an error; the thread lives on.
pub async fn run<T, F>(f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    queue()?
        .send(job)
        .map_err(|_| anyhow::anyhow!("the background thread has stopped"))?;
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            anyhow::bail!("background work panicked: {what}")
        }
        Err(_) => anyhow::bail!("the background thread has stopped"),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_work_in_order_and_survives_a_panic() {
        let a = super::run(|| 1 + 1).await.unwrap();
        assert_eq!(a, 2);
        let e = super::run(|| -> i32 { panic!("boom") }).await.unwrap_err();
        assert!(format!("{e}").contains("boom"), "{e}");
        assert_eq!(super::run(|| "still here").await.unwrap(), "still here");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_thread_is_nicer_than_the_caller() {
        // SAFETY: reads the calling thread's nice value.
        let nice = || unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(
                libc::PRIO_PROCESS,
                libc::syscall(libc::SYS_gettid) as libc::id_t,
            )
        };
        let here = nice();
        let there = super::run(nice).await.unwrap();
        assert!(there >= here + super::NICE.min(19 - here), "{here} {there}");
        assert!(there > here || here == 19);
    }
}
