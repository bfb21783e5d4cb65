//! Rolling back: new contacts get the older version at once; contacts already running stay
//! on the version they started with.

use crate::support::{Server, guest, spoken};

#[test]
fn rollback_sends_new_contacts_to_the_older_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.deploy("main", &guest("ivr-menu"));
    server.deploy("main", &guest("chaos"));

    let on_v2 = server.start_contact("main", "+15551230001");
    assert_eq!(on_v2["version"], 2);
    assert_eq!(spoken(&on_v2)[0], "Chaos flow ready.");

    let (status, record) = server.call(
        "POST",
        "/v1/flows/main/rollback",
        Some(serde_json::json!({"version": 1})),
    );
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["live"], 1);

    let on_v1 = server.start_contact("main", "+15551230002");
    assert_eq!(on_v1["version"], 1);
    assert!(
        spoken(&on_v1)[0].contains("thank you for calling Acme")
            || spoken(&on_v1)[0].contains("Thank you for calling Acme")
    );

    // The contact that started on version 2 stays there.
    let next = server.press(on_v2["contact"].as_str().unwrap(), "7");
    assert_eq!(next["version"], 2);
    assert_eq!(spoken(&next)[0], "You pressed 7. Step 2.");

    let (status, err) = server.call(
        "POST",
        "/v1/flows/main/rollback",
        Some(serde_json::json!({"version": 5})),
    );
    assert_eq!(status, 404, "{err}");
    let (_, versions) = server.call("GET", "/v1/flows/main/versions", None);
    assert_eq!(versions["live"], 1, "a failed rollback changed nothing");
    let (status, err) = server.call(
        "POST",
        "/v1/flows/nope/rollback",
        Some(serde_json::json!({"version": 1})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_flow"))
    );
}
