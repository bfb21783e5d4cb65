//! Deploying under live traffic: no step fails, no contact runs on two versions, and every
//! contact that starts after a deploy returned runs on the new version.

use std::time::Duration;

use crate::load;
use crate::support::{guest, ivr_server};

#[test]
fn deploys_under_load_drop_nothing_and_pin_every_contact() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    let ivr = guest("ivr-menu");
    let components = [
        std::fs::read(&ivr).unwrap(),
        std::fs::read(guest("chaos")).unwrap(),
    ];

    let report = load::run(
        &server.url,
        &server.token,
        "ivr-menu",
        &components,
        4,
        Duration::from_secs(6),
        Duration::from_millis(1200),
        3,
    );

    assert!(
        report.failed.is_empty(),
        "failed steps: {:?}",
        &report.failed[..report.failed.len().min(5)]
    );
    assert!(report.mixed.is_empty(), "{:?}", report.mixed);
    assert!(report.stale.is_empty(), "{:?}", report.stale);
    assert!(
        report.deploys.len() >= 3,
        "deploys happened: {}",
        report.deploys.len()
    );
    assert!(
        report.contacts > 20,
        "traffic flowed: {} contacts",
        report.contacts
    );
    for (version, _, _, first_seen) in &report.deploys[..report.deploys.len() - 1] {
        assert!(
            first_seen.is_some(),
            "new contacts reached version {version}"
        );
    }
    let (_, versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(
        versions["live"].as_u64(),
        report.deploys.last().map(|d| d.0)
    );
}
