//! A TUN device (layer 3, no packet-info header) created and configured in the calling thread's
//! network namespace, with plain ioctls so no `ip` binary is needed.
//!
//! The device is not persistent: it disappears when the emulator's fd closes, so a killed emulator
//! leaves nothing behind in the namespaces.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Room in the TUN's transmit ring for bursts that arrive while the forwarder is busy. The
/// emulated bottleneck queue is ours; this only has to absorb scheduling hiccups.
const TX_QUEUE_LEN: i32 = 1000;

/// An open TUN device. Reads return one IP packet; writes inject one.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates `name` in the current namespace with `addr/prefix`, `mtu`, IPv6 off, and brings it up.
    pub fn create(name: &str, addr: Ipv4Addr, prefix: u8, mtu: u32) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| {
                context(
                    e,
                    "open /dev/net/tun (is the tun module loaded, and are we root?)",
                )
            })?;

        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads an ifreq we own for the duration of the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EBUSY) {
                " (another emulator is running?)"
            } else {
                ""
            };
            return Err(context(e, &format!("create TUN device {name}{hint}")));
        }
        // The kernel may have adjusted the name; keep what it says.
        // SAFETY: the kernel NUL-terminates ifr_name.
        let name = unsafe { CStr::from_ptr(req.ifr_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();

        // Router solicitations and MLD reports would otherwise cross the emulated path and show up
        // in its counters; the benches use IPv4 only. Kernels without IPv6 have no such file.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");

        let ctl = control_socket()?;
        let ioctl = |what: &str, request: libc::c_ulong, req: &mut libc::ifreq| -> io::Result<()> {
            // SAFETY: SIOC[GS]IF* ioctls read or fill an ifreq we own for the duration of the call.
            if unsafe { libc::ioctl(ctl.as_raw_fd(), request, req as *mut libc::ifreq) } < 0 {
                return Err(context(
                    io::Error::last_os_error(),
                    &format!("set {what} on {name}"),
                ));
            }
            Ok(())
        };
        let mut req = ifreq(&name)?;
        req.ifr_ifru.ifru_mtu = mtu as i32;
        ioctl("MTU", libc::SIOCSIFMTU, &mut req)?;
        let mut req = ifreq(&name)?;
        // ifr_qlen shares the int slot of the union with ifr_mtu.
        req.ifr_ifru.ifru_mtu = TX_QUEUE_LEN;
        ioctl("txqueuelen", libc::SIOCSIFTXQLEN, &mut req)?;
        let mut req = ifreq(&name)?;
        req.ifr_ifru.ifru_addr = sockaddr(addr);
        ioctl("address", libc::SIOCSIFADDR, &mut req)?;
        let mut req = ifreq(&name)?;
        req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(
            u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0),
        ));
        ioctl("netmask", libc::SIOCSIFNETMASK, &mut req)?;
        // Read-modify-write: keep the TUN's own POINTOPOINT/NOARP flags, add UP.
        let mut req = ifreq(&name)?;
        ioctl("flags", libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        ioctl("flags", libc::SIOCSIFFLAGS, &mut req)?;
        Ok(Self { file, name })
    }

    /// The device name inside its namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet; `WouldBlock` when none is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Injects one packet into the device's namespace as if it had arrived on the wire.
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        // SAFETY: packet is valid for reads of packet.len() bytes.
        let n = unsafe { libc::write(self.file.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// For poll(2).
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name '{name}' must be 1-15 bytes"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it as sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// A datagram socket in the current namespace, the handle interface ioctls go through.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(context(io::Error::last_os_error(), "open control socket"));
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
