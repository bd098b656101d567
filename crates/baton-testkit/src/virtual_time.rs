//! Virtual time for tests of the in-process server.
//!
//! A test written `#[tokio::test(start_paused = true)]` runs on a
//! current-thread runtime whose clock stands still until every task waits;
//! then Tokio moves it straight to the next timer. A server started with
//! [`virtual_config`](crate::server::virtual_config) (or
//! [`TestServer::start_virtual`](crate::server::TestServer::start_virtual))
//! runs its broker on a wall clock that follows that paused clock from
//! [`start_wall`], so lease deadlines, retry backoffs, pull waits, push
//! dispatch delays and push backoffs, publish times and span times all move
//! on virtual time: a 60 s backoff takes no real time, and a test asserts the
//! exact virtual instant something happened instead of bounding a latency.
//!
//! Loopback traffic (tonic channels, reqwest, the push recorder) works on the
//! paused clock: data written to a loopback socket is readable at once, so
//! the runtime is never idle while a request is on its way, and a round trip
//! takes no virtual time at all. That is what the tests assert when they say
//! "at once": zero virtual time between a publish and the delivery it woke.
//!
//! [`settled`] waits for a condition the server reaches without any timer
//! (an in-stream ack applied, a stream's end noticed) without letting the
//! clock move.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_broker::Clock;

/// How long (real time) [`settled`] keeps giving the server turns: a bound
/// for a condition that never comes true, not a latency anyone expects.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The wall-clock time at which virtual-time servers start:
/// 2023-11-14T22:13:20Z (`1_700_000_000` s after the epoch).
pub fn start_wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A broker clock whose wall time reads [`start_wall`] now and then follows
/// Tokio's clock. Call it inside the (paused) runtime it should follow.
pub fn clock() -> Clock {
    Clock::virtual_time(start_wall())
}

/// Gives the runtime turns (each polls the sockets and runs every ready
/// task, and none moves the paused clock) until `condition` holds, and
/// asserts the virtual clock did not move meanwhile; panics naming `what`
/// when it still does not hold after 10 s of real time. For paused
/// current-thread runtimes: there the server makes all the progress it can
/// without a timer firing (work on Tokio's blocking pool, such as the disk
/// store's fsyncs, holds the clock still too), so a condition that needs no
/// timer comes true after a few turns, at the same virtual instant.
#[track_caller]
pub fn settled<'a>(
    what: &'a str,
    condition: impl FnMut() -> bool + 'a,
) -> impl Future<Output = ()> + 'a {
    settled_within(what, SETTLE_LIMIT, condition)
}

#[track_caller]
fn settled_within<'a>(
    what: &'a str,
    limit: Duration,
    mut condition: impl FnMut() -> bool + 'a,
) -> impl Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let before = tokio::time::Instant::now();
        let give_up = std::time::Instant::now() + limit;
        loop {
            if condition() {
                assert_eq!(
                    tokio::time::Instant::now(),
                    before,
                    "virtual time moved while waiting for {what} ({caller})"
                );
                return;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "{what}: still not so after {limit:?} ({caller})"
            );
            tokio::task::yield_now().await;
        }
    }
}

/// Virtual time since `start` (Tokio's clock), for assertions like
/// `assert_eq!(since(start), Duration::from_secs(1))`.
pub fn since(start: tokio::time::Instant) -> Duration {
    tokio::time::Instant::now() - start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_virtual_wall_clock_follows_tokio_time() {
        let clock = clock();
        let start = tokio::time::Instant::now();
        assert_eq!(clock.wall(), start_wall());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(since(start), Duration::from_secs(3600));
        assert_eq!(clock.wall(), start_wall() + Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn settled_waits_for_other_tasks_without_moving_the_clock() {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task_flag = flag.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            task_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let start = tokio::time::Instant::now();
        settled("the task's flag", || {
            flag.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        assert_eq!(since(start), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "never: still not so")]
    async fn settled_gives_up_on_a_condition_that_never_holds() {
        settled_within("never", Duration::from_millis(50), || false).await;
    }
}
