//! The `firewall` check: input rules of this device's firewall that drop or reject, read with
//! `nft list ruleset` (or `iptables -S`). Nothing is ever changed.

use std::time::Duration;

use serde_json::json;

use super::{Check, Status};

/// Rules quoted in the sentence; the facts list them all (up to [`MAX_RULES`]).
const QUOTED: usize = 3;
const MAX_RULES: usize = 50;
/// Longest rule kept, in bytes.
const MAX_RULE_LEN: usize = 200;

/// What the rules show.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    /// Input chains whose policy is drop, e.g. `inet filter input`.
    pub drop_policies: Vec<String>,
    /// Rules of input chains that drop or reject.
    pub drop_rules: Vec<String>,
}

pub(crate) async fn check() -> Check {
    if cfg!(target_os = "linux") {
        if let Some(text) = read("nft", &["list", "ruleset"]).await {
            return judge("nftables", &parse_nft(&text));
        }
        if let Some(text) = read("iptables", &["-S"]).await {
            return judge("iptables", &parse_iptables(&text));
        }
    }
    Check::new(
        "firewall",
        Status::Ok,
        "This device's firewall rules could not be read (on Linux that needs root and nft or iptables): nothing to report.",
    )
    .facts(json!({"readable": false, "tool": null, "drop_policies": [], "drop_rules": []}))
}

/// The command's stdout, when it ran and succeeded within 2 s.
async fn read(program: &str, args: &[&str]) -> Option<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(2), cmd.output())
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn judge(tool: &str, f: &Findings) -> Check {
    let facts = json!({"readable": true, "tool": tool, "drop_policies": f.drop_policies,
                       "drop_rules": f.drop_rules});
    if f.drop_policies.is_empty() && f.drop_rules.is_empty() {
        return Check::new(
            "firewall",
            Status::Ok,
            format!("No firewall rule on this device drops incoming traffic ({tool})."),
        )
        .facts(facts);
    }
    let mut parts: Vec<String> = f
        .drop_policies
        .iter()
        .map(|c| format!("chain {c} drops by default"))
        .collect();
    parts.extend(f.drop_rules.iter().take(QUOTED).map(|r| format!("`{r}`")));
    if f.drop_rules.len() > QUOTED {
        parts.push(format!("{} more rules", f.drop_rules.len() - QUOTED));
    }
    Check::new(
        "firewall",
        Status::Warning,
        format!(
            "This device's firewall drops some incoming traffic, which may include lansync's ({tool}: {}).",
            parts.join("; ")
        ),
    )
    .action(
        "If other devices cannot reach this one, allow UDP from the local network (WebRTC links \
         use any port, mDNS port 5353) and TCP to the host's join port.",
    )
    .facts(facts)
}

fn keep(rules: &mut Vec<String>, rule: &str) {
    if rules.len() < MAX_RULES {
        rules.push(crate::protocol::truncate(rule, MAX_RULE_LEN).to_string());
    }
}

/// Reads `nft list ruleset`: chains hooked on input, their policy and their drop/reject rules.
pub(crate) fn parse_nft(text: &str) -> Findings {
    let mut f = Findings::default();
    let mut depth = 0usize;
    let mut table = String::new();
    // (name, hooked on input, policy drop, rules)
    let mut chain: Option<(String, bool, bool, Vec<String>)> = None;
    for line in text.lines() {
        let t = line.trim();
        if depth == 0 {
            if let Some(rest) = t.strip_prefix("table ") {
                table = rest.trim_end_matches('{').trim().to_string();
            }
        } else if depth == 1 {
            if let Some(rest) = t.strip_prefix("chain ") {
                chain = Some((
                    rest.trim_end_matches('{').trim().to_string(),
                    false,
                    false,
                    Vec::new(),
                ));
            }
        } else if let (2, Some((_, input, policy, rules))) = (depth, chain.as_mut()) {
            if t.contains(" hook ") || t.starts_with("type ") {
                *input |= t.contains("hook input");
                *policy |= t.contains("policy drop");
            } else if t
                .split(|c: char| c.is_whitespace() || c == ';')
                .any(|w| w == "drop" || w == "reject")
            {
                keep(rules, t);
            }
        }
        let opens = t.matches('{').count();
        let closes = t.matches('}').count();
        depth = (depth + opens).saturating_sub(closes);
        if depth <= 1 {
            if let Some((name, input, policy, rules)) = chain.take() {
                if input {
                    if policy {
                        f.drop_policies.push(format!("{table} {name}"));
                    }
                    for r in rules {
                        keep(&mut f.drop_rules, &r);
                    }
                }
            }
        }
    }
    f
}

/// Reads `iptables -S`: the INPUT chain's policy and its rules that jump to DROP or REJECT.
pub(crate) fn parse_iptables(text: &str) -> Findings {
    let mut f = Findings::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-P", "INPUT", "DROP"] => f.drop_policies.push("filter INPUT".into()),
            ["-A", "INPUT", rest @ ..]
                if rest
                    .windows(2)
                    .any(|w| w[0] == "-j" && (w[1] == "DROP" || w[1] == "REJECT")) =>
            {
                keep(&mut f.drop_rules, line)
            }
            _ => {}
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULESET: &str = "\
table inet ldoc {
\tset blocked {
\t\ttype ipv4_addr
\t\telements = { 10.0.0.1, 10.0.0.2 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tudp dport 47390 drop
\t\tip saddr @blocked reject
\t}
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\tudp dport 53 drop
\t}
}
table ip nat {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t}
}
";

    #[test]
    fn nft_input_drops_are_found_and_other_hooks_ignored() {
        let f = parse_nft(RULESET);
        assert_eq!(f.drop_policies, vec!["inet ldoc input".to_string()]);
        assert_eq!(
            f.drop_rules,
            vec![
                "udp dport 47390 drop".to_string(),
                "ip saddr @blocked reject".to_string()
            ]
        );
        let c = judge("nftables", &f);
        assert_eq!(c.status, Status::Warning);
        assert!(
            c.message.contains("`udp dport 47390 drop`"),
            "{}",
            c.message
        );
    }

    #[test]
    fn an_empty_or_accepting_ruleset_is_ok() {
        assert_eq!(parse_nft(""), Findings::default());
        let accepting = "table inet f {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n";
        assert_eq!(parse_nft(accepting), Findings::default());
        assert_eq!(judge("nftables", &Findings::default()).status, Status::Ok);
    }

    #[test]
    fn iptables_input_policy_and_rules() {
        let f = parse_iptables(
            "-P INPUT DROP\n-P FORWARD ACCEPT\n-A INPUT -p udp -m udp --dport 5353 -j DROP\n\
             -A INPUT -p tcp -j ACCEPT\n-A OUTPUT -j REJECT\n",
        );
        assert_eq!(f.drop_policies, vec!["filter INPUT".to_string()]);
        assert_eq!(
            f.drop_rules,
            vec!["-A INPUT -p udp -m udp --dport 5353 -j DROP".to_string()]
        );
    }
}
