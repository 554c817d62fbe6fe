//! Entering a named network namespace (as made by `ip netns add`) for the duration of a closure.
//!
//! A TUN device is created in, and a socket belongs to, the namespace of the thread that made it,
//! and stays there after the thread leaves. So the emulator steps into each namespace only to set
//! up, and forwards from the root namespace with no further namespace switching.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Where `ip netns` keeps its bind mounts (`/var/run` is a link to `/run` on current systems).
const NETNS_DIR: &str = "/var/run/netns";

/// Opens the namespace `name`, with an error that says how to create it.
pub fn open(name: &str) -> io::Result<File> {
    let path = PathBuf::from(NETNS_DIR).join(name);
    File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace '{name}' not found at {} ({e}); create it with bench/wan/netns.sh up", path.display()),
        )
    })
}

/// Runs `f` with this thread in namespace `ns`, then returns the thread to where it was, even if
/// `f` fails.
pub fn within<R>(ns: &File, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
    // thread-self, not self: setns moves only the calling thread.
    let home = File::open("/proc/thread-self/ns/net")?;
    enter(ns)?;
    let result = f();
    enter(&home).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot return to the original network namespace: {e}"),
        )
    })?;
    result
}

fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own; CLONE_NEWNET checks that it is a net namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
