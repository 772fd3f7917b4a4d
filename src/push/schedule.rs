//! Runs the steps of a push on a few threads, each step as soon as the steps it needs are done:
//! a platform manifest goes up when its own blobs are in, not after every blob of the index,
//! and the index when its manifests are. Far from the registry every step is round trips, so
//! a step that waits for nothing it does not need takes them off the critical path.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::registry::stats;

/// A step and the steps (indexes into the same list) it must wait for.
pub struct Step<T> {
    pub item: T,
    pub needs: Vec<usize>,
}

struct State {
    /// Steps whose needs are all done, by index: a lower index goes first, so the caller
    /// orders the list by urgency.
    ready: BTreeSet<usize>,
    /// Needs not yet done, per step.
    waiting: Vec<usize>,
    /// Round trips deep each step ended (for the critical path: see `registry::stats`).
    ended_at: Vec<u32>,
    running: usize,
    left: usize,
    failure: Option<Error>,
}

/// Runs every step on up to `jobs` threads (the calling one included). After the first
/// failure no new step starts, and that failure is the result. Needs must point at steps of
/// the list; a step whose needs can never be done (a cycle) is never run, and is an error.
pub fn run<T: Sync>(
    steps: &[Step<T>],
    jobs: usize,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let mut dependents = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        for &need in &step.needs {
            if let Some(list) = dependents.get_mut(need) {
                list.push(i);
            }
        }
    }
    let state = Mutex::new(State {
        ready: (0..steps.len())
            .filter(|&i| steps[i].needs.is_empty())
            .collect(),
        waiting: steps.iter().map(|s| s.needs.len()).collect(),
        ended_at: vec![0; steps.len()],
        running: 0,
        left: steps.len(),
        failure: None,
    });
    let changed = Condvar::new();
    let start = stats::depth();
    let worker = || {
        stats::after(start);
        let Ok(mut s) = state.lock() else { return };
        loop {
            if s.failure.is_some() || s.left == 0 {
                break;
            }
            let Some(i) = s.ready.pop_first() else {
                if s.running == 0 {
                    // Nothing runs and nothing is ready: the rest waits on a cycle.
                    s.failure = Some(Error::usage(
                        "internal error: the push's steps wait on each other",
                    ));
                    break;
                }
                s = match changed.wait(s) {
                    Ok(s) => s,
                    Err(_) => return,
                };
                continue;
            };
            s.running += 1;
            let waited = steps[i]
                .needs
                .iter()
                .filter_map(|&n| s.ended_at.get(n))
                .max()
                .copied()
                .unwrap_or(0);
            drop(s);
            stats::after(waited);
            // A step that panicked must still count as done, or the others would wait for it
            // for ever.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&steps[i].item)))
                    .unwrap_or_else(|_| Err(Error::usage("internal error: a push step panicked")));
            s = match state.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
            s.running -= 1;
            s.left -= 1;
            s.ended_at[i] = stats::depth();
            match outcome {
                Ok(()) => {
                    for &d in &dependents[i] {
                        s.waiting[d] -= 1;
                        if s.waiting[d] == 0 {
                            s.ready.insert(d);
                        }
                    }
                }
                Err(e) => {
                    s.failure.get_or_insert(e);
                }
            }
            changed.notify_all();
        }
        changed.notify_all();
    };
    let threads = jobs.clamp(1, steps.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        worker();
    });
    let state = state
        .into_inner()
        .map_err(|_| Error::usage("an upload thread panicked"))?;
    stats::after(state.ended_at.iter().copied().max().unwrap_or(0));
    match state.failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn step(item: usize, needs: &[usize]) -> Step<usize> {
        Step {
            item,
            needs: needs.to_vec(),
        }
    }

    #[test]
    fn a_step_runs_only_after_its_needs() {
        let order = Mutex::new(Vec::new());
        let steps = [step(0, &[1, 2]), step(1, &[]), step(2, &[]), step(3, &[0])];
        run(&steps, 3, |&i| {
            order.lock().unwrap().push(i);
            Ok(())
        })
        .unwrap();
        let order = order.into_inner().unwrap();
        let at = |i| order.iter().position(|&x| x == i).unwrap();
        assert_eq!(order.len(), 4);
        assert!(at(0) > at(1) && at(0) > at(2) && at(3) > at(0), "{order:?}");
    }

    #[test]
    fn one_thread_takes_ready_steps_by_index() {
        let order = Mutex::new(Vec::new());
        // Step 0 becomes ready after 2, and goes before 3 because its index is lower.
        let steps = [step(0, &[2]), step(1, &[]), step(2, &[]), step(3, &[])];
        run(&steps, 1, |&i| {
            order.lock().unwrap().push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(order.into_inner().unwrap(), [1, 2, 0, 3]);
    }

    #[test]
    fn no_step_starts_after_a_failure() {
        let ran = AtomicUsize::new(0);
        let steps = [step(0, &[]), step(1, &[0]), step(2, &[1])];
        let result = run(&steps, 2, |&i| {
            ran.fetch_add(1, Ordering::Relaxed);
            match i {
                0 => Err(Error::usage("first")),
                _ => Ok(()),
            }
        });
        assert_eq!(result.unwrap_err().to_string(), "first");
        assert_eq!(ran.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_step_that_panics_fails_the_run_instead_of_hanging_it() {
        let steps = [step(0, &[]), step(1, &[]), step(2, &[0])];
        let result = run(&steps, 2, |&i| match i {
            0 => panic!("a bug"),
            _ => Ok(()),
        });
        assert!(result.unwrap_err().to_string().contains("panicked"));
    }

    #[test]
    fn a_cycle_is_an_error_not_a_hang() {
        let steps = [step(0, &[1]), step(1, &[0])];
        let result = run(&steps, 2, |_| Ok(()));
        assert!(result.is_err());
    }

    #[test]
    fn the_critical_path_is_the_longest_chain_of_waits() {
        // 0 and 1 at once (2 and 1 round trips: the barrier makes them overlap), then 2 after
        // both (1 round trip): 3 deep, not the 4 they add up to.
        let steps = [step(2, &[]), step(1, &[]), step(1, &[0, 1])];
        let both_running = std::sync::Barrier::new(2);
        let before = stats::depth();
        run(&steps, 2, |&trips| {
            if trips == 2 || stats::depth() == before {
                both_running.wait();
            }
            for _ in 0..trips {
                stats::round_trip();
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(stats::depth() - before, 3);
    }
}
