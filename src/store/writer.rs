//! The store's writer: one thread that runs every write of the reconcilers in the order they
//! were submitted, so SQLite's fsyncs never run on the async runtime's workers and a loop never
//! waits for one unless it asks to (by awaiting the returned receiver).

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::Store;

type Job = Box<dyn FnOnce(&Store) + Send>;

/// A handle to the writer thread; cheap to clone. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start(store: Arc<Store>) -> Writer {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                for job in rx {
                    job(&store);
                }
            })
            .expect("a thread can be spawned at start-up");
        Writer { jobs }
    }

    /// Queues `write`; it runs after every write submitted before it. The receiver yields its
    /// result once it is durable (dropping the receiver does not cancel the write).
    pub fn submit<R, F>(&self, write: F) -> oneshot::Receiver<anyhow::Result<R>>
    where
        R: Send + 'static,
        F: FnOnce(&Store) -> anyhow::Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = tx.send(write(store));
        });
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // The thread is gone (it only ends when every handle is dropped, so this is a
            // panic in a write): the write is dropped and the receiver reports it.
            drop(job);
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Activity;

    #[tokio::test]
    async fn writes_run_in_order_off_the_runtime_and_report_when_durable() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let writer = Writer::start(store.clone());
        let runtime_thread = std::thread::current().id();
        let mut last = None;
        for i in 0..50 {
            last = Some(writer.submit(move |s| {
                assert_ne!(std::thread::current().id(), runtime_thread);
                s.record("p", &Activity::new("clone", "t", "ok", format!("{i}")))
            }));
        }
        last.unwrap().await.unwrap().unwrap();
        let acts = store.activities("p", 100).unwrap();
        let details: Vec<String> = acts.iter().rev().map(|a| a.detail.clone()).collect();
        let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(details, expected);
        // A failing write reports its error to whoever waits for it.
        let err = writer
            .submit(|_| -> anyhow::Result<()> { anyhow::bail!("disk full") })
            .await
            .unwrap();
        assert_eq!(err.unwrap_err().to_string(), "disk full");
    }
}
