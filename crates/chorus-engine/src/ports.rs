//! RTP port allocation: one UDP socket per leg, from the configured range.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;

/// Hands out sockets bound to even ports of a range (RFC 3550 §11: RTP on even ports), in
/// round-robin order so a port just released is not reused at once and late packets of an
/// ended call don't land in a new one.
#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    low: u16,
    high: u16,
    cursor: Mutex<u16>,
}

impl PortPool {
    pub fn new(ip: IpAddr, low: u16, high: u16) -> Self {
        let low = low + (low % 2);
        Self {
            ip,
            low,
            high,
            cursor: Mutex::new(low),
        }
    }

    /// Binds the next free even port, or `None` when every port of the range is in use.
    pub fn allocate(&self) -> Option<UdpSocket> {
        let slots = usize::from((self.high - self.low) / 2 + 1);
        for _ in 0..slots {
            let port = {
                // The lock guards only the cursor; binding happens outside it.
                let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
                let port = *cursor;
                *cursor = if port.saturating_add(2) > self.high {
                    self.low
                } else {
                    port + 2
                };
                port
            };
            if let Ok(socket) = UdpSocket::bind(SocketAddr::new(self.ip, port)) {
                return Some(socket);
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allocates_even_ports_round_robin_and_skips_busy_ones() {
        let base = 41_000 + (std::process::id() % 500) as u16 * 2;
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), base, base + 5);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        let c = pool.allocate().unwrap();
        let ports: Vec<u16> = [&a, &b, &c]
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports, [base, base + 2, base + 4]);
        assert!(pool.allocate().is_none(), "range exhausted");
        drop(b);
        assert_eq!(
            pool.allocate().unwrap().local_addr().unwrap().port(),
            base + 2
        );
    }
}
