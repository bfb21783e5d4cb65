//! Canaries: a candidate takes a share of new contacts (or the ones matching a rule), sticks
//! per caller, can be promoted or aborted, and aborts by itself when it faults too often.

use serde_json::json;

use crate::support::{Server, deploy_canary, guest, ivr_server, queue, spoken};

#[test]
fn a_canary_that_traps_on_30_percent_of_callers_is_rolled_back_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    let (status, _) = server.call(
        "PUT",
        "/v1/flows/ivr-menu/settings",
        Some(json!({"trap_percent": "30"})),
    );
    assert_eq!(status, 200);
    let (status, canary) = deploy_canary(&server, "canary=50");
    assert_eq!(status, 201, "{canary}");
    assert_eq!(canary["version"], 2);

    let mut on_canary = 0;
    let mut aborted_after = None;
    for i in 0..200 {
        let contact = server.start_contact("ivr-menu", &format!("+1555000{i:04}"));
        // Every contact is answered: the faulted ones with the fallback.
        if contact["version"] == 2 {
            on_canary += 1;
            if contact["fault"].is_object() {
                assert_eq!(queue(&contact).as_deref(), Some("default"), "{contact}");
            } else {
                assert_eq!(spoken(&contact)[0], "Chaos flow ready.");
            }
        } else {
            assert!(contact["fault"].is_null());
        }
        let (_, flow) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
        if aborted_after.is_none() && flow["canary"].is_null() {
            aborted_after = Some(i);
        }
    }
    let aborted_after = aborted_after.expect("the canary was aborted");
    assert!(
        on_canary >= 20,
        "the canary got its share before the abort: {on_canary}"
    );

    let (_, versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(versions["live"], 1);
    let v2 = &versions["versions"][1];
    assert_eq!(v2["role"], "aborted");
    assert_eq!(v2["health"]["aborted"]["by"], "auto-rollback");
    assert!(
        v2["health"]["aborted"]["reason"]
            .as_str()
            .unwrap()
            .contains("over the 5% threshold"),
        "{v2}"
    );
    assert!(v2["health"]["faults"].as_u64().unwrap() >= 1);

    let (_, audit) = server.call("GET", "/v1/audit", None);
    let abort = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "abort")
        .expect("an audit entry");
    assert_eq!(abort["who"], "auto-rollback");
    assert_eq!(abort["detail"]["canary"], 2);

    // After the abort every new contact gets the live version.
    for i in 0..20 {
        let contact = server.start_contact("ivr-menu", &format!("+1555999{i:04}"));
        assert_eq!(
            contact["version"], 1,
            "contact after abort #{aborted_after}"
        );
    }
}

#[test]
fn canary_by_rule_sticks_per_caller_and_promotes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    let (status, body) = deploy_canary(&server, "canary=0&canary_match=from%3D%2B15551230009");
    assert_eq!(status, 201, "{body}");
    for _ in 0..3 {
        assert_eq!(
            server.start_contact("ivr-menu", "+15551230009")["version"],
            2,
            "the matching caller gets the canary"
        );
        assert_eq!(
            server.start_contact("ivr-menu", "+15551230001")["version"],
            1,
            "others do not"
        );
    }
    let (status, record) =
        server.call("POST", "/v1/flows/ivr-menu/canary/promote", Some(json!({})));
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["live"], 2);
    assert!(record["canary"].is_null());
    assert_eq!(
        server.start_contact("ivr-menu", "+15551230001")["version"],
        2
    );
    let (status, err) = server.call("POST", "/v1/flows/ivr-menu/canary/abort", Some(json!({})));
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("no_canary"))
    );
}

#[test]
fn bad_canary_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    let (status, err) = deploy_canary(&server, "canary=150");
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_canary")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("0 to 100")
    );
    let (status, err) = deploy_canary(&server, "canary=-5");
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{err}"
    );
    let (status, err) = deploy_canary(&server, "canary=10&canary_match=nonsense");
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_canary")),
        "{err}"
    );
    let (_, versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "no version was created"
    );
    assert!(versions["canary"].is_null());
    // A canary needs a live version to run beside.
    let (status, err) = server.call_raw(
        "POST",
        "/v1/flows/fresh/versions?canary=10",
        "application/wasm",
        std::fs::read(guest("chaos")).unwrap(),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_canary")),
        "{err}"
    );
}

#[test]
fn an_old_version_stays_loaded_while_a_contact_is_pinned_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);
    let pinned = server.start_contact("ivr-menu", "+15551230001");
    server.deploy("ivr-menu", &guest("chaos"));
    let loaded = |server: &Server| {
        let (_, versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
        (
            versions["versions"][0]["loaded"].as_bool().unwrap(),
            versions["versions"][0]["pinned_contacts"].as_u64().unwrap(),
        )
    };
    assert_eq!(loaded(&server), (true, 1));
    let id = pinned["contact"].as_str().unwrap();
    let (status, done) = server.call(
        "POST",
        &format!("/v1/contacts/{id}/events"),
        Some(json!({"type": "hangup"})),
    );
    assert_eq!((status, done["version"].as_u64()), (200, Some(1)));
    assert_eq!(
        loaded(&server),
        (false, 0),
        "unloaded once nothing needs it"
    );
    // It is still stored: rolling back loads it again.
    let (status, _) = server.call(
        "POST",
        "/v1/flows/ivr-menu/rollback",
        Some(json!({"version": 1})),
    );
    assert_eq!(status, 200);
    assert!(loaded(&server).0, "loaded again");
}
