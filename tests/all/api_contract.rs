//! The HTTP API's contract: `/openapi.json` is a valid OpenAPI 3.1 document
//! (`openapi-spec-validator` from PyPI), its reference page is served by the node itself, and
//! schemathesis, sending generated requests (valid and invalid) to every operation as each
//! role, finds no server error and no answer the contract does not describe.
//! The coverage of routes by the spec is a unit test (`api::openapi`).

use std::process::Command;

use serde_json::json;

use crate::support::{Server, agent, ivr_server_with_env, raw_request};

const RUNNER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/all/api_contract.py");

fn spec_of(server: &Server, dir: &std::path::Path) -> (serde_json::Value, std::path::PathBuf) {
    let (status, spec) = server.call_as(None, "GET", "/openapi.json", None);
    assert_eq!(status, 200, "{spec}");
    let path = dir.join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    (spec, path)
}

#[test]
fn the_spec_is_valid_openapi_and_its_reference_page_is_served_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (spec, path) = spec_of(&server, dir.path());
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(
        spec["paths"].as_object().unwrap().len() > 20,
        "{} paths",
        spec["paths"].as_object().unwrap().len()
    );
    let checked = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        checked.status.success(),
        "openapi-spec-validator refused the spec:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // Who may call what is the server's own table.
    assert_eq!(
        spec["paths"]["/v1/flows/{flow}/versions"]["post"]["x-roles"],
        json!(["admin", "developer"])
    );
    assert!(
        spec["components"]["securitySchemes"]["token"].is_object(),
        "{}",
        spec["components"]
    );

    let (status, page, _) = raw_request(&server.url, None, "GET", "/reference");
    assert_eq!(status, 200);
    assert!(page.contains("/assets/redoc.standalone.js"), "{page}");
    let (status, script, _) = raw_request(&server.url, None, "GET", "/assets/redoc.standalone.js");
    assert_eq!(status, 200);
    assert!(script.len() > 500_000, "the whole Redoc bundle is served");

    // An error from axum's own extractors reads like every other error.
    let (status, error) = server.call("GET", "/v1/flows/main/versions/-1", None);
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_contract_for_any_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server_with_env(
        &dir.path().join("data"),
        &[],
        &[("SWITCHBOARD_API_REQUESTS_PER_SECOND", "0")],
    );
    let mut tokens = vec![("admin".to_string(), server.token.clone())];
    for (name, role) in [("sam", "supervisor"), ("dee", "developer")] {
        let (status, made) = server.call(
            "POST",
            "/v1/users",
            Some(json!({"name": name, "role": role})),
        );
        assert_eq!(status, 201, "{made}");
        let (status, made) = server.call(
            "POST",
            &format!("/v1/users/{name}/tokens"),
            Some(json!({"label": "contract"})),
        );
        assert_eq!(status, 201, "{made}");
        tokens.push((
            role.to_string(),
            made["token"].as_str().unwrap().to_string(),
        ));
    }
    tokens.push((
        "agent".to_string(),
        agent(
            &server,
            "ann",
            json!({"skills": ["support"]}),
            json!({"voice": 1}),
        ),
    ));
    // Something to find: a contact of the sample IVR.
    server.start_contact("ivr-menu", "+15550001");

    let (_, path) = spec_of(&server, dir.path());
    let examples = std::env::var("SWITCHBOARD_CONTRACT_EXAMPLES").unwrap_or_else(|_| "10".into());
    let out = dir.path().join("contract");
    std::fs::create_dir_all(&out).unwrap();
    let mut command = Command::new("python3");
    command
        .arg(RUNNER)
        .arg(&path)
        .arg(&server.url)
        .arg(&out)
        .arg(&examples)
        .args(tokens.iter().map(|(role, token)| format!("{role}={token}")))
        .arg("public=-");
    let run = command.output().expect("python3 runs");
    let said = String::from_utf8_lossy(&run.stdout);
    eprintln!("{said}{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "schemathesis found failures (above)");
    assert!(
        said.contains("all roles: operations tried") && said.contains("failures 0"),
        "{said}"
    );
}
