//! Contract versions: flows built against `switchboard:flow@0.1.0` keep running unchanged
//! beside flows of the current 0.2.0, with every host interface, across deploys and rollbacks.

use serde_json::json;

use crate::support::{Server, guest, spoken};

#[test]
fn a_flow_built_against_0_1_0_runs_beside_0_2_0_flows() {
    let dir = tempfile::tempdir().unwrap();
    let customers = format!("{}/../examples/customers.csv", env!("CARGO_MANIFEST_DIR"));
    let server = Server::start(dir.path(), &["--customers", customers.as_str()]);

    let (status, old) = server.deploy("legacy", &guest("contract-0-1"));
    assert_eq!(status, 201, "{old}");
    assert_eq!(old["world"], "switchboard:flow/flow@0.1.0");
    let (status, _) = server.call(
        "PUT",
        "/v1/flows/legacy/settings",
        Some(json!({"greeting": "Welcome to Acme."})),
    );
    assert_eq!(status, 200);

    // config, crm, kv, clock and log of 0.1.0 all answer.
    let first = server.start_contact("legacy", "+15551230001");
    let said = spoken(&first);
    assert!(
        said[0].starts_with("Welcome to Acme. Ada Lovelace You are caller number 1. It is "),
        "{said:?}"
    );
    assert!(said[0].ends_with(" in Paris."), "{said:?}");
    assert_eq!(said[1], "Press a key.");
    assert_eq!(first["actions"][1]["type"], "gather");
    let second = server.start_contact("legacy", "+15550009999");
    assert!(
        spoken(&second)[0].starts_with("Welcome to Acme. You are caller number 2."),
        "the kv counter of 0.1.0 is the same store: {:?}",
        spoken(&second)
    );
    let pressed = server.press(first["contact"].as_str().unwrap(), "4");
    assert_eq!(spoken(&pressed), ["You pressed 4."]);

    // An e-mail reaches a 0.1.0 flow as its text: it has no mail event.
    let mailed = server.event(
        second["contact"].as_str().unwrap(),
        json!({"type": "mail", "subject": "Order", "from": "jane@example.com",
               "text": "Where is my order?", "attachments": [
                   {"name": "receipt.pdf", "content_type": "application/pdf", "size": 1200}]}),
    );
    assert_eq!(spoken(&mailed), ["You wrote: Where is my order?."]);

    // A 0.2.0 version replaces it live, and a rollback brings 0.1.0 back.
    let (status, new) = server.deploy("legacy", &guest("ivr-menu"));
    assert_eq!(status, 201, "a flow may move to the new contract: {new}");
    assert_eq!(new["world"], "switchboard:flow/flow@0.2.0");
    let on_new = server.start_contact("legacy", "+15551230002");
    assert_eq!(on_new["version"], 2);
    let (status, record) = server.call(
        "POST",
        "/v1/flows/legacy/rollback",
        Some(json!({"version": 1})),
    );
    assert_eq!(status, 200, "{record}");
    let back = server.start_contact("legacy", "+15550009999");
    assert_eq!(back["version"], 1);
    assert!(
        spoken(&back)[0].contains("caller number 3"),
        "{:?}",
        spoken(&back)
    );

    // After a restart the stored 0.1.0 component loads again.
    drop(server);
    let server = Server::start(dir.path(), &[]);
    let again = server.start_contact("legacy", "+15550009999");
    assert!(
        spoken(&again)[0].contains("caller number 4"),
        "{:?}",
        spoken(&again)
    );
}
