//! Batched non-blocking reads of a UDP socket with `recvmmsg(2)`.
//!
//! A media thread reads every leg's socket once per tick. With `recv_from` that is a read that
//! returns the packet and a second one that finds the socket empty (`EAGAIN`): two system calls
//! per member and tick, on a machine where a trivial one costs ~230 ns. `recvmmsg` with
//! `MSG_DONTWAIT` returns everything waiting, up to the batch, in one call, and says how many.
//!
//! The buffers are allocated once ([`RecvBatch::new`]); the message headers, which hold raw
//! pointers to them, live on the stack of each call only, so the batch stays `Send` and a
//! read allocates nothing.

#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Datagrams one call can return.
pub const BATCH: usize = 4;
/// Bytes kept of each datagram (longer ones are truncated and flagged).
pub const DATAGRAM: usize = 2048;

/// Receive buffers and headers for up to [`BATCH`] datagrams.
pub struct RecvBatch {
    bufs: Box<[[u8; DATAGRAM]; BATCH]>,
    addrs: [libc::sockaddr_storage; BATCH],
    /// Per datagram: (length, address length, flags) as the kernel reported them.
    meta: [(usize, libc::socklen_t, libc::c_int); BATCH],
    received: usize,
}

/// One datagram of a batch.
pub struct Datagram<'a> {
    pub payload: &'a [u8],
    /// `None` for an address family other than IPv4/IPv6 (never on a UDP/IP socket).
    pub source: Option<SocketAddr>,
    /// Longer than [`DATAGRAM`]: `payload` is cut.
    pub truncated: bool,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        // SAFETY: all-zero bytes are a valid sockaddr_storage (a plain C struct of integers).
        let addrs = unsafe { mem::zeroed() };
        Self {
            bufs: Box::new([[0; DATAGRAM]; BATCH]),
            addrs,
            meta: [(0, 0, 0); BATCH],
            received: 0,
        }
    }

    /// Reads up to `max` (at most [`BATCH`]) waiting datagrams without blocking; 0 when none
    /// is waiting. Errors are those of `recvmmsg` other than `EAGAIN`/`EINTR` (an ICMP error
    /// from an earlier send surfaces here, as with `recv_from`).
    pub fn recv(&mut self, socket: &impl AsRawFd, max: usize) -> io::Result<usize> {
        self.received = 0;
        let max = max.min(BATCH);
        if max == 0 {
            return Ok(0);
        }
        // SAFETY: all-zero bytes are valid iovec/mmsghdr values (null pointers, zero
        // lengths); the entries the kernel reads are filled in below.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for (i, buf) in self.bufs.iter_mut().enumerate().take(max) {
            iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
        }
        for (i, (msg, addr)) in msgs
            .iter_mut()
            .zip(self.addrs.iter_mut())
            .enumerate()
            .take(max)
        {
            msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_hdr.msg_iov = &mut iovs[i];
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..max]` point at `iovs` (this frame) and at buffers and address storage
        // owned by `self`, all alive for the call; each length given is its buffer's. The
        // kernel fills at most `max` entries.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(error),
            };
        }
        self.received = n as usize;
        for (meta, msg) in self.meta.iter_mut().zip(&msgs).take(self.received) {
            *meta = (
                msg.msg_len as usize,
                msg.msg_hdr.msg_namelen,
                msg.msg_hdr.msg_flags,
            );
        }
        Ok(self.received)
    }

    /// Datagram `i` of the last [`RecvBatch::recv`].
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.received {
            return None;
        }
        let (len, namelen, flags) = self.meta[i];
        Some(Datagram {
            payload: &self.bufs[i][..len.min(DATAGRAM)],
            source: socket_addr(&self.addrs[i], namelen),
            truncated: flags & libc::MSG_TRUNC != 0,
        })
    }
}

fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length checked) into
            // storage, which is large and aligned enough for any socket address.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn an_empty_socket_reads_nothing_without_blocking() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(&socket, BATCH).expect("recv"), 0);
        assert!(batch.get(0).is_none());
    }

    #[test]
    fn waiting_datagrams_come_in_one_call_with_their_sources() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = socket.local_addr().expect("addr");
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.2:0").expect("bind");
        a.send_to(b"one", to).expect("send");
        b.send_to(b"two", to).expect("send");
        a.send_to(&[7u8; 3000], to).expect("send");
        // Loopback delivers inside send_to, so all three are queued now.
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(&socket, BATCH).expect("recv"), 3);
        let d = batch.get(0).expect("first");
        assert_eq!(
            (d.payload, d.source, d.truncated),
            (&b"one"[..], Some(a.local_addr().expect("a")), false)
        );
        let d = batch.get(1).expect("second");
        assert_eq!(
            (d.payload, d.source),
            (&b"two"[..], Some(b.local_addr().expect("b")))
        );
        let d = batch.get(2).expect("third");
        assert_eq!((d.payload.len(), d.truncated), (DATAGRAM, true));
        assert_eq!(batch.recv(&socket, BATCH).expect("recv"), 0);
    }

    #[test]
    fn a_batch_returns_at_most_max_and_leaves_the_rest_queued() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = socket.local_addr().expect("addr");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for i in 0..6u8 {
            tx.send_to(&[i], to).expect("send");
        }
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(&socket, 2).expect("recv"), 2);
        assert_eq!(batch.get(1).expect("second").payload, &[1]);
        assert_eq!(batch.recv(&socket, BATCH).expect("recv"), BATCH);
        assert_eq!(batch.get(0).expect("third").payload, &[2]);
        assert_eq!(batch.get(3).expect("sixth").payload, &[5]);
        assert_eq!(batch.recv(&socket, BATCH).expect("recv"), 0);
    }

    #[test]
    fn ipv6_sources_are_read() {
        let Ok(socket) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this host
        };
        let tx = UdpSocket::bind("[::1]:0").expect("bind");
        tx.send_to(b"v6", socket.local_addr().expect("addr"))
            .expect("send");
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(&socket, BATCH).expect("recv"), 1);
        let d = batch.get(0).expect("datagram");
        assert_eq!(
            (d.payload, d.source),
            (&b"v6"[..], Some(tx.local_addr().expect("tx")))
        );
    }
}
