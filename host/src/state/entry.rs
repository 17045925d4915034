//! How a state entry is laid out in a backend: the key behind its partition, the value behind
//! its expiry time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes before the value: the expiry in ms since the Unix epoch, little-endian (0: never).
const HEADER: usize = 8;

/// The backend key of `key` in partition `scope`: the partition (big-endian, so a partition's
/// keys are contiguous and ordered) followed by the key.
pub fn scoped_key(scope: u32, key: &[u8]) -> Vec<u8> {
    let mut scoped = Vec::with_capacity(4 + key.len());
    scoped.extend_from_slice(&scope.to_be_bytes());
    scoped.extend_from_slice(key);
    scoped
}

/// The partition and user key of a backend key made by [`scoped_key`].
pub fn split_scoped_key(scoped: &[u8]) -> anyhow::Result<(u32, &[u8])> {
    let (scope, key) = scoped
        .split_first_chunk::<4>()
        .ok_or_else(|| anyhow::anyhow!("a state key of {} bytes has no partition", scoped.len()))?;
    Ok((u32::from_be_bytes(*scope), key))
}

/// The expiry (ms since the epoch, 0: never) and value of a stored entry made by [`encode`].
pub fn split_entry(stored: &[u8]) -> anyhow::Result<(u64, &[u8])> {
    let (header, value) = stored
        .split_first_chunk::<HEADER>()
        .ok_or_else(|| anyhow::anyhow!("a state entry of {} bytes has no expiry", stored.len()))?;
    Ok((u64::from_le_bytes(*header), value))
}

/// The stored form of `value` expiring at `expires_at_ms` (0: never).
pub fn encode(value: &[u8], expires_at_ms: u64) -> Vec<u8> {
    let mut stored = Vec::with_capacity(HEADER + value.len());
    stored.extend_from_slice(&expires_at_ms.to_le_bytes());
    stored.extend_from_slice(value);
    stored
}

/// The value of a stored entry, or `None` when it has expired at `now_ms` (or is too short to
/// be an entry).
pub fn decode(stored: &[u8], now_ms: u64) -> Option<&[u8]> {
    let (header, value) = stored.split_at_checked(HEADER)?;
    let expires = u64::from_le_bytes(header.try_into().expect("8 bytes"));
    (expires == 0 || expires > now_ms).then_some(value)
}

/// Whether a stored entry has expired at `now_ms`.
pub fn expired(stored: &[u8], now_ms: u64) -> bool {
    decode(stored, now_ms).is_none()
}

/// Processing time: the host's wall clock in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The expiry time of an entry written at `now_ms` with `ttl_ms` to live.
pub fn expiry(now_ms: u64, ttl_ms: Option<u64>) -> u64 {
    match ttl_ms {
        None => 0,
        Some(ttl) => now_ms.saturating_add(ttl.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_at_their_time() {
        let stored = encode(b"v", expiry(1_000, Some(50)));
        assert_eq!(decode(&stored, 1_049), Some(&b"v"[..]));
        assert_eq!(decode(&stored, 1_050), None);
        let forever = encode(b"v", expiry(1_000, None));
        assert_eq!(decode(&forever, u64::MAX), Some(&b"v"[..]));
    }

    #[test]
    fn partitions_prefix_keys_in_order() {
        assert!(scoped_key(1, b"zz") < scoped_key(2, b"aa"));
        assert_eq!(scoped_key(258, b"k"), vec![0, 0, 1, 2, b'k']);
    }
}
