//! The first bytes on every connection: which transfer it belongs to.
//!
//! ```text
//! "DWCPAMST" | version u8 | session id [16] | connection index u32 LE
//! ```
//!
//! `version` is the frame version the connection speaks, the one agreed in TLS (ALPN): 2 with
//! peers of this build, 1 with older ones and the TypeScript reference path.

use dwcp_amst::frame::Version;

use crate::{Result, TransportError};

const MAGIC: &[u8; 8] = b"DWCPAMST";
/// Length of a hello.
pub const HELLO_LEN: usize = 8 + 1 + 16 + 4;

/// A parsed hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Names the transfer; random per transfer.
    pub session: [u8; 16],
    /// The sender's index for this connection.
    pub conn: u32,
    /// The frame version that follows.
    pub version: Version,
}

impl Hello {
    /// The wire form.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8] = self.version as u8;
        b[9..25].copy_from_slice(&self.session);
        b[25..29].copy_from_slice(&self.conn.to_le_bytes());
        b
    }

    /// Parses exactly one hello.
    pub fn decode(b: &[u8; HELLO_LEN]) -> Result<Self> {
        if &b[..8] != MAGIC {
            return Err(TransportError::BadHello(
                "not a DWCP AMST connection".into(),
            ));
        }
        let version = Version::from_u8(b[8])
            .ok_or_else(|| TransportError::BadHello(format!("unsupported version {}", b[8])))?;
        let mut session = [0u8; 16];
        session.copy_from_slice(&b[9..25]);
        let mut conn = [0u8; 4];
        conn.copy_from_slice(&b[25..29]);
        Ok(Hello {
            session,
            conn: u32::from_le_bytes(conn),
            version,
        })
    }
}

/// A random session id, from the TLS provider's CSPRNG.
pub fn new_session_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut id)
        .map_err(|_| TransportError::io("session id", "the OS random source failed"))?;
    Ok(id)
}
