//! Who may start a call: the trusted addresses and networks of `sip.trusted` (the trunks and
//! PBXs in front), or anyone when it is empty; then at most `sip.invites_per_second` new calls
//! a second from one address (twice that in a burst), so that one source flooding an open port
//! leaves room for every other caller. A listed trunk is not limited: all of a center's calls
//! may come from it. Only new INVITEs are checked: requests within a call, registrations
//! (digest authenticated) and responses pass.

use std::net::IpAddr;
use std::time::Instant;

use anyhow::Context as _;
use ipnet::IpNet;

/// What may start a call.
pub struct Access {
    trusted: Vec<IpNet>,
    new_calls: crate::rate::Limiter<IpAddr>,
}

/// Why a new call was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a trusted address: 403.
    Untrusted,
    /// Over its rate: 503 with `Retry-After`.
    TooMany,
}

impl Access {
    /// From the configuration; a bad entry is an error that names it.
    pub fn new(trusted: &[String], invites_per_second: u32) -> anyhow::Result<Access> {
        let trusted = trusted
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .with_context(|| {
                        format!("sip.trusted: {entry:?} is not an address or network such as 203.0.113.7 or 10.0.0.0/8")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Access {
            trusted,
            new_calls: crate::rate::Limiter::new(invites_per_second),
        })
    }

    /// Whether `ip` may start a call now (counted against its rate when it may).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if !self.trusted.is_empty() {
            return if self.trusted.iter().any(|net| net.contains(&ip)) {
                Ok(())
            } else {
                Err(Refusal::Untrusted)
            };
        }
        self.new_calls.admit(&ip, now).map_err(|_| Refusal::TooMany)
    }

    /// Whether a list of trusted sources is set.
    pub fn restricted(&self) -> bool {
        !self.trusted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn trusted_networks_and_addresses_only() {
        let access = Access::new(&["10.0.0.0/8".into(), "203.0.113.7".into()], 1).unwrap();
        let now = Instant::now();
        assert_eq!(access.admit("10.2.3.4".parse().unwrap(), now), Ok(()));
        assert_eq!(access.admit("203.0.113.7".parse().unwrap(), now), Ok(()));
        assert_eq!(
            access.admit("::ffff:10.9.9.9".parse().unwrap(), now),
            Ok(())
        );
        assert_eq!(
            access.admit("203.0.113.8".parse().unwrap(), now),
            Err(Refusal::Untrusted)
        );
        // A listed trunk brings every call of the center: never limited.
        assert!((0..100).all(|_| access.admit("10.2.3.4".parse().unwrap(), now).is_ok()));
        let bad = Access::new(&["10.0.0.0/33".into()], 0).err().unwrap();
        assert!(bad.to_string().contains("10.0.0.0/33"), "{bad}");
        assert!(
            Access::new(&[], 0)
                .unwrap()
                .admit("192.0.2.1".parse().unwrap(), now)
                .is_ok()
        );
    }

    #[test]
    fn a_flooding_source_is_limited_and_others_are_not() {
        let access = Access::new(&[], 10).unwrap();
        let t0 = Instant::now();
        let flood: IpAddr = "192.0.2.66".parse().unwrap();
        let admitted = (0..1000)
            .filter(|_| access.admit(flood, t0).is_ok())
            .count();
        assert_eq!(admitted, 20, "the burst");
        assert_eq!(
            access.admit("192.0.2.1".parse().unwrap(), t0),
            Ok(()),
            "another caller"
        );
        let later = t0 + Duration::from_millis(500);
        let admitted = (0..1000)
            .filter(|_| access.admit(flood, later).is_ok())
            .count();
        assert_eq!(admitted, 5, "refilled at 10 a second");
    }
}
