//! This device's interfaces and addresses, the subnets they are on, and its default gateway.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::{Check, Status};

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub interface: String,
    pub ip: IpAddr,
    pub prefix: u8,
    pub running: bool,
    pub loopback: bool,
}

/// The `interfaces` check and what later checks need from it.
pub(crate) struct Interfaces {
    pub check: Check,
    /// Addresses lansync would use (as the transport picks them).
    pub usable: Vec<Address>,
}

/// Lists the interfaces and judges them.
pub(crate) fn interfaces() -> Interfaces {
    match if_addrs::get_if_addrs() {
        Ok(list) => judge(
            list.into_iter()
                .map(|i| Address {
                    running: i.is_oper_up(),
                    loopback: i.is_loopback(),
                    ip: i.ip(),
                    prefix: match &i.addr {
                        if_addrs::IfAddr::V4(a) => a.prefixlen,
                        if_addrs::IfAddr::V6(a) => a.prefixlen,
                    },
                    interface: i.name,
                })
                .collect(),
        ),
        Err(e) => Interfaces {
            check: Check::new(
                "interfaces",
                Status::Problem,
                format!("Cannot list this device's network interfaces ({e})."),
            )
            .action("Check that this device is connected to the Wi-Fi the other devices use."),
            usable: Vec::new(),
        },
    }
}

/// The rule of the transport's candidate gathering: not loopback, not an IPv6 link-local
/// address (it would need a scope id); here also only running interfaces.
fn is_usable(a: &Address) -> bool {
    a.running
        && !a.loopback
        && !a.ip.is_unspecified()
        && !matches!(a.ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

fn self_assigned(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_link_local())
}

/// Pure, so the verdicts are unit-tested.
pub(crate) fn judge(all: Vec<Address>) -> Interfaces {
    let usable: Vec<Address> = all.iter().filter(|a| is_usable(a)).cloned().collect();
    let listed: Vec<_> = all
        .iter()
        .map(|a| {
            json!({"interface": a.interface, "address": a.ip.to_string(), "prefix": a.prefix,
                   "running": a.running, "loopback": a.loopback, "usable": is_usable(a)})
        })
        .collect();
    let names: Vec<String> = usable
        .iter()
        .map(|a| format!("{} ({})", a.ip, a.interface))
        .collect();
    let facts = json!({
        "addresses": listed,
        "usable": usable.iter().map(|a| a.ip.to_string()).collect::<Vec<_>>(),
    });
    let check = if usable.is_empty() {
        Check::new(
            "interfaces",
            Status::Problem,
            "No network: this device has only its loopback address, so no other device can reach it.",
        )
        .action("Connect to the Wi-Fi the other devices use.")
    } else if usable.iter().all(|a| self_assigned(&a.ip)) {
        Check::new(
            "interfaces",
            Status::Warning,
            format!(
                "The network gave this device no address, only a self-assigned one: {}.",
                names.join(", ")
            ),
        )
        .action(
            "Reconnect to the Wi-Fi the other devices use; devices with self-assigned addresses \
             meet only if they are on the same network.",
        )
    } else {
        Check::new(
            "interfaces",
            Status::Ok,
            format!("lansync would use {}.", names.join(", ")),
        )
    };
    Interfaces {
        check: check.facts(facts),
        usable,
    }
}

/// Whether `ip` is on the subnet of one of `ours`.
pub(crate) fn same_subnet(ip: IpAddr, ours: &[Address]) -> bool {
    ours.iter().any(|a| match (a.ip, ip) {
        (IpAddr::V4(mine), IpAddr::V4(theirs)) => {
            let bits = u32::from(a.prefix.min(32));
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(mine) & mask == u32::from(theirs) & mask
        }
        (IpAddr::V6(mine), IpAddr::V6(theirs)) => {
            let bits = u32::from(a.prefix.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(mine) & mask == u128::from(theirs) & mask
        }
        _ => false,
    })
}

/// The IPv4 default gateway, from `/proc/net/route` (Linux); `None` elsewhere or when none.
pub(crate) fn default_gateway() -> Option<Ipv4Addr> {
    parse_route_table(&std::fs::read_to_string("/proc/net/route").ok()?)
}

/// `/proc/net/route`: `Iface Destination Gateway Flags …`, addresses as little-endian hex.
fn parse_route_table(text: &str) -> Option<Ipv4Addr> {
    text.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let (_iface, dest, gw) = (cols.next()?, cols.next()?, cols.next()?);
        if dest != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(gw, 16).ok()?;
        // The kernel prints the address's bytes read as a host-order number.
        (gw != 0).then(|| Ipv4Addr::from(gw.to_ne_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(interface: &str, ip: &str, prefix: u8, loopback: bool) -> Address {
        Address {
            interface: interface.into(),
            ip: ip.parse().unwrap(),
            prefix,
            running: true,
            loopback,
        }
    }

    #[test]
    fn only_loopback_is_no_network() {
        let r = judge(vec![
            addr("lo", "127.0.0.1", 8, true),
            addr("lo", "::1", 128, true),
        ]);
        assert_eq!(r.check.status, Status::Problem);
        assert!(r.check.message.starts_with("No network"));
        assert!(r.usable.is_empty());
    }

    #[test]
    fn a_lan_address_is_used_and_link_local_v6_is_not() {
        let r = judge(vec![
            addr("lo", "127.0.0.1", 8, true),
            addr("wlan0", "192.168.1.23", 24, false),
            addr("wlan0", "fe80::1", 64, false),
        ]);
        assert_eq!(r.check.status, Status::Ok);
        assert_eq!(r.usable.len(), 1);
        assert_eq!(r.check.facts["usable"], json!(["192.168.1.23"]));
        assert!(r.check.message.contains("192.168.1.23 (wlan0)"));
    }

    #[test]
    fn a_self_assigned_address_alone_is_a_warning() {
        let r = judge(vec![addr("wlan0", "169.254.7.9", 16, false)]);
        assert_eq!(r.check.status, Status::Warning);
    }

    #[test]
    fn an_interface_that_is_not_running_is_not_used() {
        let mut down = addr("eth0", "10.0.0.2", 24, false);
        down.running = false;
        assert_eq!(judge(vec![down]).check.status, Status::Problem);
    }

    #[test]
    fn subnets_compare_by_prefix() {
        let ours = [addr("wlan0", "192.168.1.23", 24, false)];
        assert!(same_subnet("192.168.1.200".parse().unwrap(), &ours));
        assert!(!same_subnet("192.168.2.1".parse().unwrap(), &ours));
        assert!(!same_subnet("fd00::1".parse().unwrap(), &ours));
        let v6 = [addr("wlan0", "fd00:1::5", 64, false)];
        assert!(same_subnet("fd00:1::9".parse().unwrap(), &v6));
        assert!(!same_subnet("fd00:2::9".parse().unwrap(), &v6));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn the_default_gateway_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\n\
                     wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\n";
        assert_eq!(
            parse_route_table(table),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        assert_eq!(parse_route_table("Iface\tDestination\n"), None);
    }
}
