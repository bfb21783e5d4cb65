//! The admin commands read like a tool for people and keep `--json` for scripts: `trace`
//! shows a contact as the `simulate` transcript does, `contact` sums a session up in words,
//! `audit` and `versions` are tables; with `--json` each prints the API's answer.

use serde_json::Value;

use crate::support::{cli, ivr_server, queue};

/// The flow state's size in bytes, from its base64 text.
fn decoded_len(base64: &str) -> usize {
    base64.len() / 4 * 3 - base64.chars().rev().take_while(|c| *c == '=').count()
}

#[test]
fn trace_and_contact_show_a_contact_in_words_and_json_is_the_api_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &["--queue", "sales"]);
    let started = server.start_contact("ivr-menu", "+15551230009");
    let id = started["contact"].as_str().unwrap().to_string();
    assert_eq!(queue(&server.press(&id, "1")).as_deref(), Some("sales"));
    let (status, api_trace) = server.call("GET", &format!("/v1/contacts/{id}/trace"), None);
    assert_eq!(status, 200, "{api_trace}");
    let states: Vec<&str> = api_trace
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["state"].as_str().unwrap())
        .collect();

    let (ok, trace) = cli(&server, &["trace", &id]);
    assert!(ok, "{trace}");
    let lines: Vec<&str> = trace.lines().collect();
    let step = |n: u32| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("step {n}  ")) && l.contains("  version 1  "))
            .unwrap_or_else(|| panic!("no header for step {n}:\n{trace}"))
    };
    let (first, second) = (step(1), step(2));
    assert_eq!(lines[first + 1], "  event  started", "{trace}");
    assert!(
        lines[first..second].contains(&"  flow   > Thank you for calling Acme."),
        "the greeting is what the caller heard in step 1:\n{trace}"
    );
    assert!(
        lines[first..second]
            .iter()
            .any(|l| l.starts_with("  host   crm.lookup \"phone/+15551230009\" -> ")),
        "the CRM lookup and its result on one line:\n{trace}"
    );
    assert_eq!(
        lines[second + 1],
        "  event  caller pressed \"1\"",
        "{trace}"
    );
    assert!(
        lines[second..]
            .contains(&r#"  switchboard: queued in "sales" at priority 0 [department=sales]"#),
        "{trace}"
    );
    for (n, state) in states.iter().enumerate() {
        assert!(!trace.contains(state), "no base64 state:\n{trace}");
        let size = format!("  state  {} bytes", decoded_len(state));
        assert!(
            lines[step(n as u32 + 1)..].contains(&size.as_str()),
            "step {} shows its state's size ({size}):\n{trace}",
            n + 1
        );
    }

    let (ok, contact) = cli(&server, &["contact", &id]);
    assert!(ok, "{contact}");
    for line in [
        format!("contact    {id}"),
        "channel    voice".into(),
        "from       +15551230009 -> +15550100".into(),
        "flow       ivr-menu, pinned to version 1".into(),
        "status     queued in sales at priority 0".into(),
        "awaiting   nothing".into(),
        "attributes".into(),
        "  department=sales".into(),
    ] {
        assert!(
            contact.lines().any(|l| l == line),
            "{line:?} in:\n{contact}"
        );
    }
    assert!(
        contact
            .lines()
            .any(|l| l.starts_with("steps      ") && l.ends_with(" (0 faulted)")),
        "{contact}"
    );
    assert!(
        !states.iter().any(|state| contact.contains(state)),
        "no base64 state:\n{contact}"
    );

    // Scripts get the API's answer: the same steps with the same fields. (News from the
    // router may add steps after the API was asked, so the CLI's answer can be longer.)
    let (ok, json) = cli(&server, &["trace", &id, "--json"]);
    assert!(ok, "{json}");
    let cli_trace: Value = serde_json::from_str(&json).expect("trace --json is JSON");
    let (api_steps, cli_steps) = (api_trace.as_array().unwrap(), cli_trace.as_array().unwrap());
    assert!(cli_steps.len() >= api_steps.len(), "{json}");
    assert_eq!(cli_steps[..api_steps.len()], api_steps[..], "{json}");
    let (ok, json) = cli(&server, &["contact", &id, "--json"]);
    assert!(ok, "{json}");
    let cli_session: Value = serde_json::from_str(&json).expect("contact --json is JSON");
    let (_, api_session) = server.call("GET", &format!("/v1/contacts/{id}"), None);
    let fields = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(fields(&cli_session), fields(&api_session));
    assert_eq!(cli_session["id"], api_session["id"]);
    assert_eq!(cli_session["status"], api_session["status"]);
}

#[test]
fn audit_and_versions_are_tables_and_json_is_the_api_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = ivr_server(dir.path(), &[]);

    let (ok, audit) = cli(&server, &["audit"]);
    assert!(ok, "{audit}");
    let deploy = audit
        .lines()
        .find(|l| l.contains(" deploy "))
        .unwrap_or_else(|| panic!("the start-up deploy is in the trail:\n{audit}"));
    assert!(deploy.contains("ivr-menu"), "{deploy}");
    assert!(deploy.contains("from=none"), "{deploy}");
    assert!(deploy.ends_with(" to=1"), "{deploy}");
    assert!(
        audit
            .lines()
            .any(|l| l.contains(" configure ") && l.ends_with(" days=mon-sun")),
        "settings read as key=value, not JSON:\n{audit}"
    );
    assert!(!audit.contains('"'), "no JSON quoting:\n{audit}");
    let (ok, json) = cli(&server, &["audit", "--json"]);
    assert!(ok, "{json}");
    let (_, api_audit) = server.call("GET", "/v1/audit", None);
    assert_eq!(
        serde_json::from_str::<Value>(&json).expect("audit --json is JSON"),
        api_audit
    );

    let (ok, versions) = cli(&server, &["versions", "ivr-menu"]);
    assert!(ok, "{versions}");
    let row = versions
        .lines()
        .find(|l| l.trim_start().starts_with("1  live"))
        .unwrap_or_else(|| panic!("version 1 is live:\n{versions}"));
    assert!(
        row.starts_with("   1  live"),
        "the version is right-aligned: {row:?}"
    );
    let (ok, json) = cli(&server, &["versions", "ivr-menu", "--json"]);
    assert!(ok, "{json}");
    let (_, api_versions) = server.call("GET", "/v1/flows/ivr-menu/versions", None);
    assert_eq!(
        serde_json::from_str::<Value>(&json).expect("versions --json is JSON"),
        api_versions
    );
}
