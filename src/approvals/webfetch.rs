//! `webfetch` requests, never put to the owner: allowed once when every
//! address they name or resolve to is public.

use super::*;

/// `Ok` when every address a `webfetch` request names (its patterns and its
/// detail, usually the same URL, each checked once) is public; else why not.
pub(super) async fn fetch_verdict(ask: &PermissionAsk) -> std::result::Result<(), String> {
    let mut urls: Vec<&str> = ask
        .patterns
        .iter()
        .chain([&ask.detail])
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    if urls.is_empty() {
        return Err("no address given".to_owned());
    }
    for url in urls {
        public_url(url, WEBFETCH_LOOKUP).await?;
    }
    Ok(())
}

/// How long the name in a web address may take to resolve.
pub(super) const WEBFETCH_LOOKUP: Duration = Duration::from_secs(3);

/// `Ok` when `url` is an `http(s)` address whose host is, or resolves only
/// to, public addresses ([`is_public`]); otherwise why not. The URL is read
/// the way OpenCode's fetch reads it (WHATWG), so numeric forms such as
/// `http://2130706433/` or `http://0x7f.1/` are the addresses they mean.
pub async fn public_url(url: &str, lookup: Duration) -> std::result::Result<(), String> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("not a web address: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme {} is not http or https", parsed.scheme()));
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = parsed.host_str().ok_or("no host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(format!("{name} is this machine"));
            }
            match tokio::time::timeout(lookup, tokio::net::lookup_host((name.as_str(), port))).await
            {
                Err(_) => return Err(format!("{name} did not resolve in time")),
                Ok(Err(e)) => return Err(format!("{name} does not resolve: {e}")),
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
            }
        }
    };
    if addrs.is_empty() {
        return Err("the host has no address".into());
    }
    match addrs.iter().find(|ip| !is_public(**ip)) {
        Some(ip) => Err(format!("{ip} is not a public address")),
        None => Ok(()),
    }
}

/// Whether `ip` is a public unicast address: not unspecified, loopback,
/// private (10/8, 172.16/12, 192.168/16), shared (100.64/10), link-local
/// (169.254/16, fe80::/10), unique-local (fc00::/7), site-local, multicast,
/// broadcast, reserved, documentation or benchmarking, and not an IPv6 form
/// (mapped, compatible, NAT64, 6to4) of such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

pub(super) fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

pub(super) fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0; 6] {
        // ::, ::1 and the old IPv4-compatible forms.
        return false;
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !((s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] & 0xff00) == 0xff00
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x2001 && s[1] == 0)
        || (s[0] == 0x0100 && s[1..4] == [0; 3]))
}
