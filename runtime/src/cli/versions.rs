//! `switchboard versions NAME`: every version of a flow in a table (role, hash, size,
//! health, contacts pinned to it, when and by whom it was deployed), the canary and any
//! aborted canary's reason; `--json` prints the server's answer for scripts.

use clap::Args;

use super::Remote;
use super::client::Client;
use super::output::{Format, human_size};
use crate::api::VersionList;
use crate::flows::Canary;

#[derive(Args)]
pub struct VersionsArgs {
    /// The flow.
    flow: String,
    #[command(flatten)]
    format: Format,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: VersionsArgs) -> anyhow::Result<()> {
    let answer = Client::new(&args.remote)?.get(&format!("/v1/flows/{}/versions", args.flow))?;
    args.format.print(answer, "version list", table)
}

fn table(list: &VersionList) -> String {
    let mut lines = Vec::new();
    if let Some(canary) = &list.canary {
        lines.push(canary_line(canary));
    }
    lines.push(format!(
        "{:>4}  {:<7}  {:<12}  {:>9}  {:>7}  {:>6}  {:>6}  {:<32}  by",
        "ver", "role", "sha256", "size", "steps", "faults", "pinned", "deployed"
    ));
    for v in &list.versions {
        let sha = &v.version.sha256;
        lines.push(format!(
            "{:>4}  {:<7}  {:<12}  {:>9}  {:>7}  {:>6}  {:>6}  {:<32}  {}",
            v.version.version,
            v.role,
            sha.get(..12).unwrap_or(sha),
            human_size(usize::try_from(v.version.size).unwrap_or(usize::MAX)),
            v.health.steps,
            v.health.faults,
            v.pinned_contacts,
            v.version.deployed_at,
            v.version.deployed_by
        ));
        if let Some(aborted) = &v.health.aborted {
            lines.push(format!(
                "      aborted by {} at {}: {}",
                aborted.by, aborted.at, aborted.reason
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// `canary: version 2 takes 10% of new contacts, and every contact with from=+15551230003`.
fn canary_line(canary: &Canary) -> String {
    let rules: Vec<String> = canary
        .matches
        .iter()
        .map(|m| format!("{}={}", m.field, m.value))
        .collect();
    let rules = if rules.is_empty() {
        String::new()
    } else {
        format!(", and every contact with {}", rules.join(" or "))
    };
    format!(
        "canary: version {} takes {}% of new contacts{rules}",
        canary.version, canary.percent
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{Aborted, FlowVersion, Health, Match, VersionStatus};

    fn version(n: u64, role: &str, health: Health) -> VersionStatus {
        VersionStatus {
            version: FlowVersion {
                flow: "ivr-menu".into(),
                version: n,
                sha256: "0f3c7dfd05714f33366958a0606590a7".into(),
                size: 181_917,
                world: "flow".into(),
                deployed_at: "2026-11-25T10:00:00+00:00".into(),
                deployed_by: "admin".into(),
                connector: None,
            },
            role: role.into(),
            health,
            pinned_contacts: 1,
            loaded: true,
        }
    }

    #[test]
    fn the_table_aligns_and_says_who_gets_the_canary() {
        let aborted = Health {
            steps: 10,
            faults: 6,
            aborted: Some(Aborted {
                at: "2026-11-25T11:00:00+00:00".into(),
                by: "auto-rollback".into(),
                reason: "fault rate 60% is over the 20% threshold".into(),
            }),
            ..Health::default()
        };
        let list = VersionList {
            live: 1,
            canary: Some(Canary {
                version: 3,
                percent: 10,
                matches: vec![Match {
                    field: "from".into(),
                    value: "+15551230003".into(),
                }],
                started_at: "2026-11-25T12:00:00+00:00".into(),
            }),
            versions: vec![
                version(1, "live", Health::default()),
                version(2, "aborted", aborted),
                version(3, "canary", Health::default()),
            ],
        };
        let text = table(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "canary: version 3 takes 10% of new contacts, and every contact with from=+15551230003"
        );
        assert!(lines[2].starts_with("   1  live     0f3c7dfd0571     178 KB        0"));
        assert_eq!(
            lines[4],
            "      aborted by auto-rollback at 2026-11-25T11:00:00+00:00: fault rate 60% is over the 20% threshold"
        );
        assert!(lines[5].starts_with("   3  canary "), "{text}");
    }
}
