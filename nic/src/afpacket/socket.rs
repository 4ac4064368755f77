//! Thin wrappers over the socket calls the port makes at open time: AF_PACKET sockets, socket
//! options, binding, and the interface queries (`SIOCGIF*`). None of these runs per packet.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libc::{c_int, c_void, socklen_t};

use super::sys::{TpacketReq, TpacketReq3, TpacketStatsV3};

/// Values that may cross `setsockopt` / `getsockopt` as raw bytes: plain `repr(C)` integers
/// and structs without padding the kernel could leave uninitialized.
pub(super) trait SockOptValue: Copy + Default {}
impl SockOptValue for c_int {}
impl SockOptValue for u32 {}
impl SockOptValue for TpacketReq {}
impl SockOptValue for TpacketReq3 {}
impl SockOptValue for TpacketStatsV3 {}

/// A raw `AF_PACKET` socket for `protocol` (host order; 0 receives nothing until bound with a
/// protocol).
pub(super) fn packet_socket(protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            c_int::from(protocol.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub(super) fn set_option<T: SockOptValue>(
    fd: &OwnedFd,
    level: c_int,
    name: c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to `size_of::<T>()` initialized bytes (SockOptValue types are plain
    // data) that live across the call; the kernel only reads them.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<c_void>(),
            size_of::<T>() as socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(fd, level, name)` into a `T`.
pub(super) fn get_option<T: SockOptValue>(
    fd: &OwnedFd,
    level: c_int,
    name: c_int,
) -> io::Result<T> {
    let mut value = T::default();
    let mut len = size_of::<T>() as socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, which is a plain-data `T` of
    // exactly that size, valid for any bit pattern the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Binds a packet socket to interface `ifindex` for `protocol` (host order; 0 = send only).
pub(super) fn bind_to(fd: &OwnedFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex as c_int;
    // SAFETY: `addr` is a valid sockaddr_ll of the length passed; the kernel only reads it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `if_nametoindex`; `None` when no such interface exists.
pub(super) fn interface_index(name: &CStr) -> Option<u32> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// What the `SIOCGIF*` queries report about one interface.
#[derive(Clone, Copy, Debug)]
pub(super) struct InterfaceInfo {
    pub(super) up: bool,
    pub(super) mtu: u32,
    pub(super) hardware_type: u16,
    pub(super) mac: [u8; 6],
}

/// Flags, MTU and hardware address of `name`, through an unprivileged datagram socket.
pub(super) fn interface_info(name: &CStr) -> io::Result<InterfaceInfo> {
    // SAFETY: socket() takes no pointers; the result is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let control = unsafe { OwnedFd::from_raw_fd(raw) };
    let flags_req = interface_request(&control, name, libc::SIOCGIFFLAGS)?;
    let mtu_req = interface_request(&control, name, libc::SIOCGIFMTU)?;
    let hw_req = interface_request(&control, name, libc::SIOCGIFHWADDR)?;
    // SAFETY: each ioctl filled the union member matching its request (flags, mtu, hwaddr), all
    // plain data.
    let (flags, mtu, hwaddr) = unsafe {
        (
            hw_flags(&flags_req),
            mtu_req.ifr_ifru.ifru_mtu,
            hw_req.ifr_ifru.ifru_hwaddr,
        )
    };
    let mut mac = [0u8; 6];
    for (byte, raw) in mac.iter_mut().zip(hwaddr.sa_data.iter()) {
        *byte = *raw as u8;
    }
    Ok(InterfaceInfo {
        up: flags & libc::IFF_UP != 0,
        mtu: mtu.max(0) as u32,
        hardware_type: hwaddr.sa_family,
        mac,
    })
}

/// # Safety
///
/// `req` was filled by `SIOCGIFFLAGS`.
unsafe fn hw_flags(req: &libc::ifreq) -> c_int {
    // SAFETY: the caller guarantees the flags member is the one the kernel wrote.
    c_int::from(unsafe { req.ifr_ifru.ifru_flags })
}

/// One `ioctl(fd, request, &ifreq)` for interface `name`.
fn interface_request(fd: &OwnedFd, name: &CStr, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { zeroed() };
    let bytes = name.to_bytes();
    // The caller validated the name to at most IFNAMSIZ - 1 bytes; the zeroed tail terminates it.
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(bytes.iter())
        .take(libc::IFNAMSIZ - 1)
    {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for the duration of the call; these requests read the name
    // and write one union member inside the struct.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut req as *mut libc::ifreq) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The system page size (the smallest ring block the kernel accepts).
pub(super) fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size <= 0 {
        4096
    } else {
        size as usize
    }
}
