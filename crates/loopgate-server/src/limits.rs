//! Limits that answer instead of falling over: the client's address (with
//! a trusted proxy header), failed-login throttling by address and by
//! username at an address in a bounded table, and password hashing on a
//! bounded pool of its own threads. Over a limit the caller gets
//! `429 rate_limited` or `503 unavailable` with `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use loopgate_core::Timestamp;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::AppState;
use crate::http::error::ApiError;

/// The client's address: the peer's, or, when `trusted_proxy_header` is
/// configured (loopgate behind a proxy), the last address in that header
/// (the one the proxy itself added). Unknown: `0.0.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<ClientAddr, Self::Rejection> {
        Ok(client_addr(
            parts,
            app.config.trusted_proxy_header.as_deref(),
        ))
    }
}

fn client_addr(parts: &Parts, header: Option<&str>) -> ClientAddr {
    let forwarded = header.and_then(|name| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|part| parse_addr(part.trim()))
            .next_back()
    });
    let peer = || {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
    };
    ClientAddr(
        forwarded
            .or_else(peer)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    )
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|it| it.ip()))
}

/// Failed logins allowed per username at one address within [`WINDOW`].
pub(crate) const MAX_PER_USERNAME: u32 = 5;
/// Failed logins allowed per address (any usernames) within [`WINDOW`].
pub(crate) const MAX_PER_ADDRESS: u32 = 50;
/// How long failures count.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);

/// What a throttle entry counts: an address, or a username at an address
/// (the username only as a hash: the table holds no names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Username([u8; 16], IpAddr),
}

/// Failed logins in memory (a replica counts its own), in a table of at
/// most `capacity` entries. A full table of live entries refuses logins
/// that would need a new entry (fail closed) until entries expire.
pub(crate) struct LoginThrottle {
    capacity: usize,
    failures: Mutex<HashMap<Key, (u32, Timestamp)>>,
}

type FailureTable<'a> = std::sync::MutexGuard<'a, HashMap<Key, (u32, Timestamp)>>;

/// Why a login attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttled {
    /// Too many failures; try again after this long.
    Locked(Duration),
    /// The table is full: too many failing clients at once.
    Full,
}

impl LoginThrottle {
    pub(crate) fn new(capacity: usize) -> LoginThrottle {
        LoginThrottle {
            capacity: capacity.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username: &str, addr: IpAddr) -> [(Key, u32); 2] {
        [
            (Key::Address(addr), MAX_PER_ADDRESS),
            (
                Key::Username(username_hash(username), addr),
                MAX_PER_USERNAME,
            ),
        ]
    }

    /// Whether `username` may try to log in from `addr` now.
    pub(crate) fn check(
        &self,
        username: &str,
        addr: IpAddr,
        now: Timestamp,
    ) -> Result<(), Throttled> {
        // Fail closed: an attempt whose failure could not be counted is
        // not made.
        let (map, keys) = self.room_for(username, addr, now)?;
        let mut wait = None;
        for (key, max) in keys {
            if let Some((count, since)) = map.get(&key) {
                let end = since.plus(WINDOW);
                if max <= *count && now < end {
                    let left = Duration::from_millis((end.millis() - now.millis()).unsigned_abs());
                    wait = Some(wait.map_or(left, |it: Duration| it.max(left)));
                }
            }
        }
        match wait {
            Some(wait) => Err(Throttled::Locked(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failure; `Err(Full)` when the table has no room for it.
    pub(crate) fn failed(
        &self,
        username: &str,
        addr: IpAddr,
        now: Timestamp,
    ) -> Result<(), Throttled> {
        let (mut map, keys) = self.room_for(username, addr, now)?;
        for (key, _) in keys {
            let entry = map.entry(key).or_insert((0, now));
            if entry.1.plus(WINDOW) <= now {
                *entry = (0, now);
            }
            entry.0 = entry.0.saturating_add(1);
        }
        Ok(())
    }

    /// The locked table and the attempt's keys, when they fit (expired
    /// entries are dropped when the table is full); `Err(Full)` when not.
    fn room_for(
        &self,
        username: &str,
        addr: IpAddr,
        now: Timestamp,
    ) -> Result<(FailureTable<'_>, [(Key, u32); 2]), Throttled> {
        let mut map = self.failures.lock().map_err(|_| Throttled::Full)?;
        let keys = Self::keys(username, addr);
        let new = keys
            .iter()
            .filter(|(key, _)| !map.contains_key(key))
            .count();
        if self.capacity < map.len() + new {
            map.retain(|_, (_, since)| now < since.plus(WINDOW));
            if self.capacity < map.len() + new {
                return Err(Throttled::Full);
            }
        }
        Ok((map, keys))
    }

    /// Forgets the username's failures at this address after a success.
    pub(crate) fn succeeded(&self, username: &str, addr: IpAddr) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&Key::Username(username_hash(username), addr));
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.failures.lock().map_or(0, |map| map.len())
    }
}

/// A short, case-insensitive hash of a username: what the throttle keys and
/// the log of failed logins hold instead of the name.
pub(crate) fn username_hash(username: &str) -> [u8; 16] {
    let digest = Sha256::digest(username.to_lowercase().as_bytes());
    let mut out = [0_u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Password hashing and verification (argon2id, 19 MiB and tens of
/// milliseconds each) on threads of their own, at most `workers` at once;
/// a caller that waits longer than `wait` for a turn gets 503.
pub(crate) struct Passwords {
    permits: Semaphore,
    wait: Duration,
}

impl Passwords {
    pub(crate) fn new(workers: usize, wait: Duration) -> Passwords {
        Passwords {
            permits: Semaphore::new(workers.max(1)),
            wait,
        }
    }

    /// Runs `work` on a password thread when one is free.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let busy = || {
            ApiError::busy(
                "too many password checks are running; try again in a moment",
                Duration::from_secs(1),
            )
        };
        let permit = tokio::time::timeout(self.wait, self.permits.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let (send, receive) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("loopgate-password".to_owned())
            .spawn(move || {
                let _ = send.send(work());
            })
            .map_err(|e| ApiError::internal(&e))?;
        let result = receive.await.map_err(|e| ApiError::internal(&e));
        drop(permit);
        result
    }
}

/// Concurrent long-running requests (event streams, long-polls) per
/// credential, at most `max` each.
pub(crate) struct PerCredential {
    what: &'static str,
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One held place; given back when dropped.
pub(crate) struct Held {
    owner: std::sync::Arc<PerCredential>,
    key: String,
}

impl PerCredential {
    pub(crate) fn new(what: &'static str, max: usize) -> PerCredential {
        PerCredential {
            what,
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for `key`'s next request, or 429 when it holds `max`.
    pub(crate) fn acquire(self: &std::sync::Arc<Self>, key: &str) -> Result<Held, ApiError> {
        let limited = || {
            ApiError::rate_limited(
                format!(
                    "this credential has {} {} open, the most allowed",
                    self.max, self.what
                ),
                Duration::from_secs(1),
            )
            .help("close one first, or use another credential for another client")
        };
        let mut open = self.open.lock().map_err(|_| limited())?;
        let count = open.entry(key.to_owned()).or_insert(0);
        if self.max <= *count {
            return Err(limited());
        }
        *count += 1;
        Ok(Held {
            owner: std::sync::Arc::clone(self),
            key: key.to_owned(),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut open) = self.owner.open.lock()
            && let Some(count) = open.get_mut(&self.key)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Proposals per second a system may submit (a token bucket per system,
/// per replica): `rate` a second, in bursts of up to `rate`.
pub(crate) struct SubmitRate {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl SubmitRate {
    pub(crate) fn new(rate: u32) -> SubmitRate {
        SubmitRate {
            rate: f64::from(rate.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `system`, or 429 with how long until the next.
    pub(crate) fn take(&self, system: &str) -> Result<(), ApiError> {
        self.take_at(system, std::time::Instant::now())
    }

    fn take_at(&self, system: &str, now: std::time::Instant) -> Result<(), ApiError> {
        let limited = |wait: Duration| {
            ApiError::rate_limited(
                format!(
                    "system `{system}` submits more than {} proposals a second",
                    self.rate
                ),
                wait,
            )
        };
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| limited(Duration::from_secs(1)))?;
        if 100_000 <= buckets.len() {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
        }
        let (tokens, at) = buckets.entry(system.to_owned()).or_insert((self.rate, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if refilled < 1.0 {
            *tokens = refilled;
            return Err(limited(Duration::from_secs_f64(
                (1.0 - refilled) / self.rate,
            )));
        }
        *tokens = refilled - 1.0;
        Ok(())
    }
}

/// How long a background worker waits after failures in a row: doubling
/// from `base` to `max`, and back to `base` after a success (a database
/// that is down is not hammered, and the log is not flooded).
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            next: base,
        }
    }

    /// The wait after another failure.
    pub(crate) fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// A success: the next failure waits `base` again.
    pub(crate) fn succeeded(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn five_failures_lock_a_username_at_one_address_only() {
        let throttle = LoginThrottle::new(100);
        let t0 = Timestamp::from_millis(1_000_000);
        for _ in 0..4 {
            throttle.failed("Ann", A, t0).unwrap();
        }
        assert_eq!(throttle.check("ann", A, t0), Ok(()));
        throttle.failed("ann", A, t0).unwrap();
        assert_eq!(throttle.check("ANN", A, t0), Err(Throttled::Locked(WINDOW)));
        assert_eq!(throttle.check("bob", A, t0), Ok(()));
        // The same user from elsewhere (the locked admin's way in).
        assert_eq!(throttle.check("ann", B, t0), Ok(()));
        assert_eq!(throttle.check("ann", A, t0.plus(WINDOW)), Ok(()));
    }

    #[test]
    fn an_address_is_locked_after_many_usernames() {
        let throttle = LoginThrottle::new(1_000);
        let t0 = Timestamp::from_millis(1_000_000);
        for i in 0..MAX_PER_ADDRESS {
            assert_eq!(throttle.check(&format!("user{i}"), A, t0), Ok(()));
            throttle.failed(&format!("user{i}"), A, t0).unwrap();
        }
        assert!(matches!(
            throttle.check("someone", A, t0),
            Err(Throttled::Locked(_))
        ));
        assert_eq!(throttle.check("someone", B, t0), Ok(()));
    }

    #[test]
    fn the_table_is_bounded_and_fails_closed_when_full() {
        let throttle = LoginThrottle::new(10);
        let t0 = Timestamp::from_millis(1_000_000);
        for i in 0..5 {
            throttle.failed(&format!("u{i}"), A, t0).unwrap();
        }
        assert_eq!(throttle.len(), 6);
        for i in 0..3 {
            throttle.failed(&format!("v{i}"), B, t0).unwrap();
        }
        assert_eq!(throttle.len(), 10);
        assert_eq!(throttle.check("w", B, t0), Err(Throttled::Full));
        assert_eq!(throttle.failed("w", B, t0), Err(Throttled::Full));
        assert_eq!(throttle.len(), 10);
        // Known entries are still counted and checked.
        assert_eq!(throttle.check("v0", B, t0), Ok(()));
        // Expired entries make room.
        assert_eq!(throttle.failed("w", B, t0.plus(WINDOW)), Ok(()));
        assert_eq!(throttle.len(), 2);
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<u128> = (0..4).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_millis(100));
    }

    #[test]
    fn places_per_credential_are_given_back() {
        let streams = std::sync::Arc::new(PerCredential::new("event streams", 2));
        let a = streams.acquire("k").unwrap();
        let _b = streams.acquire("k").unwrap();
        assert!(streams.acquire("k").is_err());
        assert!(streams.acquire("other").is_ok());
        drop(a);
        assert!(streams.acquire("k").is_ok());
    }

    #[test]
    fn a_system_submits_at_its_rate_in_bursts() {
        let rate = SubmitRate::new(2);
        let t0 = std::time::Instant::now();
        assert!(rate.take_at("s", t0).is_ok());
        assert!(rate.take_at("s", t0).is_ok());
        assert!(rate.take_at("s", t0).is_err());
        assert!(rate.take_at("t", t0).is_ok());
        let later = t0 + Duration::from_millis(500);
        assert!(rate.take_at("s", later).is_ok());
        assert!(rate.take_at("s", later).is_err());
    }

    proptest::proptest! {
        /// Whatever a client writes in the proxy header, the address is one
        /// it wrote as an address, or the peer's; nothing panics.
        #[test]
        fn any_proxy_header_yields_an_address(value in "[0-9a-f:., \\[\\]%a-z-]{0,80}") {
            let mut request = axum::http::Request::builder();
            if let Ok(header) = axum::http::HeaderValue::from_str(&value) {
                request = request.header("x-forwarded-for", header);
            }
            let (mut parts, ()) = request.body(()).unwrap().into_parts();
            parts.extensions.insert(ConnectInfo(SocketAddr::new(A, 1)));
            let ClientAddr(found) = client_addr(&parts, Some("x-forwarded-for"));
            proptest::prop_assert!(
                found == A || value.split(',').any(|part| parse_addr(part.trim()) == Some(found))
            );
        }
    }

    #[test]
    fn the_proxy_header_names_the_client_only_when_trusted() {
        let request = axum::http::Request::builder()
            .header("x-forwarded-for", "203.0.113.9, 198.51.100.7")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::new(A, 4711)));
        assert_eq!(client_addr(&parts, None), ClientAddr(A));
        assert_eq!(
            client_addr(&parts, Some("x-forwarded-for")),
            ClientAddr("198.51.100.7".parse().unwrap())
        );
        assert_eq!(client_addr(&parts, Some("x-real-ip")), ClientAddr(A));
    }
}
