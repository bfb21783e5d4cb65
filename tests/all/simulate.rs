//! `switchboard simulate`: the README walkthrough. A scripted caller presses 1 and reaches
//! sales, against a deployed flow through the server and against a local .wasm file.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::{guest, ivr_server};

fn simulate(args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("simulate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pressing_1_on_the_deployed_menu_reaches_sales() {
    let dir = tempfile::tempdir().unwrap();
    let customers = format!("{}/../examples/customers.csv", env!("CARGO_MANIFEST_DIR"));
    let server = ivr_server(
        dir.path(),
        &[
            "--bind",
            "+15550100=ivr-menu",
            "--customers",
            customers.as_str(),
            "--queue",
            "sales",
            "--queue",
            "vip",
        ],
    );
    let data_dir = dir.path().display().to_string();
    let (ok, out, err) = simulate(
        &[
            "ivr-menu",
            "--server",
            &server.url,
            "--data-dir",
            &data_dir,
            "--from",
            "+15551230002",
        ],
        "1\n",
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("Hello Grace, thank you for calling Acme."),
        "the CRM greets a known caller:\n{out}"
    );
    assert!(out.contains("caller > 1"), "{out}");
    assert!(out.contains(r#"queued in "sales" at priority 0"#), "{out}");
    assert!(out.contains(r#"waiting in queue "sales""#), "{out}");
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(
        stats["tasks"]["pending"], 1,
        "the caller waits in the sales queue the server defined at start-up: {stats}"
    );

    // A VIP caller goes to the VIP queue first.
    let (ok, out, _) = simulate(
        &[
            "ivr-menu",
            "--server",
            &server.url,
            "--data-dir",
            &data_dir,
            "--from",
            "+15551230001",
        ],
        "2\n",
    );
    assert!(ok);
    assert!(out.contains(r#"queued in "vip" at priority 10"#), "{out}");

    // Silence twice (the prompt replays once), then the flow says goodbye.
    let (ok, out, _) = simulate(
        &["ivr-menu", "--server", &server.url, "--data-dir", &data_dir],
        "\n\n",
    );
    assert!(ok);
    assert!(out.contains("the prompt plays again"), "{out}");
    assert!(out.contains("We did not receive any input"), "{out}");
    assert!(out.contains("Contact ended (hangup)"), "{out}");

    // A wrong token is refused with a message that says what to do.
    let (ok, _, err) = simulate(
        &["ivr-menu", "--server", &server.url, "--token", "sbt_wrong"],
        "1\n",
    );
    assert!(!ok);
    assert!(err.contains("401 unauthorized"), "{err}");
}

#[test]
fn local_wasm_file_without_a_server_honours_business_hours() {
    let ivr = guest("ivr-menu").display().to_string();
    let open = [
        "--setting",
        "timezone=America/New_York",
        "--at",
        "2026-11-25T10:00:00-05:00",
    ];
    let (ok, out, err) = simulate(&[&[ivr.as_str()][..], &open[..]].concat(), "1\n");
    assert!(ok, "{err}");
    assert!(out.contains(r#"queued in "sales""#), "{out}");
    assert!(err.contains("compiling"), "progress is shown: {err}");

    // Saturday at 10:00 in New York: closed.
    let (ok, out, _) = simulate(&[ivr.as_str(), "--at", "2026-11-28T15:00:00Z"], "");
    assert!(ok);
    assert!(out.contains("We are closed right now"), "{out}");

    let (ok, _, err) = simulate(&["/nonexistent/flow.wasm"], "");
    assert!(!ok);
    assert!(err.contains("cannot read /nonexistent/flow.wasm"), "{err}");
}
