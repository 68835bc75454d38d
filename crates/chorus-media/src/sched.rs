//! Real-time scheduling for the calling thread: `SCHED_FIFO` at a fixed priority
//! (sched(7), `sched_setscheduler(2)`).
//!
//! A media thread that is runnable under the default policy shares its core with whatever else
//! is runnable there (the engine's own SIP and HTTP threads, other processes), and the fair
//! scheduler may let them run for several milliseconds first. A tick that starts that late
//! delays every packet of its rooms, and one that ends after its next deadline is an overrun.
//! Under `SCHED_FIFO` the media thread runs as soon as it wakes; its work per period is
//! bounded, so the rest of the core still gets the remainder (the kernel's real-time throttle,
//! `/proc/sys/kernel/sched_rt_runtime_us`, keeps 5 % for others by default in any case).
//!
//! Setting a real-time policy needs `CAP_SYS_NICE` (or root, or an `RLIMIT_RTPRIO` at least the
//! priority): without it the call fails with `PermissionDenied` and the thread keeps its policy.

#![allow(unsafe_code)]

use std::io;

/// Highest `SCHED_FIFO` priority on Linux.
pub const MAX_PRIORITY: u8 = 99;

/// Puts the calling thread under `SCHED_FIFO` at `priority` (1..=[`MAX_PRIORITY`]).
pub fn set_current_thread_fifo(priority: u8) -> io::Result<()> {
    if !(1..=MAX_PRIORITY).contains(&priority) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("SCHED_FIFO priority must be 1..={MAX_PRIORITY}, not {priority}"),
        ));
    }
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call; pid 0 is
    // the calling thread (Linux applies the policy per thread), so no other thread's state is
    // touched.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's policy and priority, e.g. `(libc::SCHED_FIFO, 10)`.
#[cfg(test)]
fn current_thread_policy() -> io::Result<(i32, i32)> {
    // SAFETY: no pointers; pid 0 is the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable `sched_param` that outlives the call.
    if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((policy, param.sched_priority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_applies_to_the_calling_thread_only_or_is_refused_for_lack_of_privilege() {
        let before = current_thread_policy().expect("policy");
        let (result, inside) = std::thread::spawn(|| {
            let result = set_current_thread_fifo(7);
            (result, current_thread_policy().expect("policy"))
        })
        .join()
        .expect("thread");
        match result {
            Ok(()) => assert_eq!(inside, (libc::SCHED_FIFO, 7)),
            // Unprivileged: refused, and nothing changed.
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                assert_eq!(inside, before);
            }
        }
        assert_eq!(current_thread_policy().expect("policy"), before);
    }

    #[test]
    fn priorities_outside_1_to_99_are_rejected_before_the_kernel_is_asked() {
        for bad in [0, 100, 255] {
            let e = set_current_thread_fifo(bad).expect_err("out of range");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }
}
