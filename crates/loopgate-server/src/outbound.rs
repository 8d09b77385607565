//! The fence around outbound requests (webhooks, later notifications):
//! destinations on loopback, link-local (cloud metadata), private,
//! unique-local, carrier-grade NAT, multicast or unspecified addresses are
//! refused unless `webhook_allow_private` lists their network. A name is
//! checked when it is set and again at every connection: the resolver the
//! HTTP client connects through drops refused addresses, so the client
//! connects only to addresses that were checked (no DNS rebinding).
//! Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which addresses outbound requests may reach.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    allowed: Arc<Vec<IpNet>>,
}

/// Why a destination is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// The address is internal.
    #[error(
        "`{0}` is a loopback, link-local, private or otherwise internal address; allow its network with `webhook_allow_private` if it is meant"
    )]
    Internal(IpAddr),
    /// The name does not resolve.
    #[error("`{0}` does not resolve: {1}")]
    Unresolved(String, String),
}

impl Fence {
    /// A fence that lets through these networks besides public addresses.
    pub fn new(allowed: Vec<IpNet>) -> Fence {
        Fence {
            allowed: Arc::new(allowed),
        }
    }

    /// Whether an address may be reached.
    pub fn admits(&self, addr: IpAddr) -> bool {
        !internal(addr)
            || self
                .allowed
                .iter()
                .any(|net| net.contains(&canonical(addr)))
    }

    /// Checks a host (name or literal) as it is set: every address it
    /// resolves to now must be admitted.
    pub async fn check_host(&self, host: &str, port: u16) -> Result<(), Refused> {
        let addrs = resolve(host, port).await?;
        match addrs.iter().find(|addr| !self.admits(addr.ip())) {
            Some(addr) => Err(Refused::Internal(addr.ip())),
            None => Ok(()),
        }
    }

    /// A literal address in a URL's host, when it is one the fence refuses
    /// (literals do not go through the resolver).
    pub fn refuses_literal(&self, url: &reqwest::Url) -> Option<Refused> {
        let host = url.host_str()?;
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()?;
        (!self.admits(ip)).then_some(Refused::Internal(ip))
    }

    /// The resolver for the HTTP client: names resolve to their admitted
    /// addresses only; a name with none fails to connect.
    pub fn resolver(&self) -> Arc<Fence> {
        Arc::new(self.clone())
    }
}

/// An HTTP client builder for URLs that users set (webhooks, Teams
/// workflows): names resolve through the fence, redirects are not followed,
/// requests time out after `webhook_timeout`. Callers add what is theirs and
/// build it.
pub(crate) fn client(app: &crate::AppState) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(app.fence.resolver())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(app.config.webhook_timeout)
        .user_agent(concat!("loopgate/", env!("CARGO_PKG_VERSION")))
}

impl Resolve for Fence {
    fn resolve(&self, name: Name) -> Resolving {
        let fence = self.clone();
        Box::pin(async move {
            let addrs = resolve(name.as_str(), 0).await?;
            let admitted: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|addr| fence.admits(addr.ip()))
                .collect();
            if admitted.is_empty() {
                let refused = addrs.first().map_or(
                    Refused::Unresolved(name.as_str().to_owned(), "no address".into()),
                    |addr| Refused::Internal(addr.ip()),
                );
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(admitted.into_iter()) as Addrs)
        })
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    tokio::net::lookup_host((host, port))
        .await
        .map(Iterator::collect)
        .map_err(|e| Refused::Unresolved(host.to_owned(), e.to_string()))
}

/// An IPv4 address carried in IPv6 (mapped, or NAT64's well-known prefix)
/// is judged as the IPv4 address it carries.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Loopback, link-local (with cloud metadata at 169.254.169.254),
/// private, shared (CGNAT), unique-local, multicast, broadcast,
/// unspecified and other reserved ranges.
fn internal(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip == Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0)
        }
    }
}

/// Parses `webhook_allow_private`: CIDRs (`10.0.0.0/8`) or single
/// addresses.
pub fn parse_allowed(items: &[String]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{item}` is not a network (CIDR) or an address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_admitted() {
        let fence = Fence::default();
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!fence.admits(ip(refused)), "{refused}");
        }
        for admitted in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(fence.admits(ip(admitted)), "{admitted}");
        }
    }

    #[test]
    fn allowed_networks_open_the_fence_for_themselves_only() {
        let fence = Fence::new(parse_allowed(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap());
        assert!(fence.admits(ip("10.20.30.40")));
        assert!(fence.admits(ip("127.0.0.1")));
        assert!(!fence.admits(ip("127.0.0.2")));
        assert!(!fence.admits(ip("192.168.0.1")));
        assert!(parse_allowed(&["ten".into()]).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_set_and_at_connect() {
        let fence = Fence::default();
        assert!(matches!(
            fence.check_host("localhost", 80).await,
            Err(Refused::Internal(_))
        ));
        let name: Name = "localhost".parse().unwrap();
        assert!(fence.resolve(name).await.is_err());
        let open = Fence::new(parse_allowed(&["127.0.0.0/8".into(), "::1/128".into()]).unwrap());
        assert_eq!(open.check_host("localhost", 80).await, Ok(()));
    }
}
