//! Three nodes on one PostgreSQL behind HAProxy: any node serves any request (a contact's
//! steps, an agent's accept) and the flow hears its task's news exactly once; when the leader
//! is killed, another node takes over the router within seconds, with the open offer intact;
//! events for one contact sent to two nodes at once are each a step, numbered in turn; a
//! deploy one node acknowledged is loaded on every node and is what every node starts
//! afterwards; 1,000 tasks made and
//! worked on all three are each assigned once, and none acknowledged is lost when the leader
//! is killed under load; a leader stopped past its lease and resumed leads no more.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::store::local_postgres::LocalPostgres;

use crate::support::{Server, call_at, ivr_server};

/// HAProxy in front of `backends` (base URLs), from the template `scripts/cluster.sh` uses.
pub struct Haproxy {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    pub fn start(backends: &[&str]) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, url)| {
                format!(
                    "    server node{} {} check\n",
                    i + 1,
                    url.trim_start_matches("http://")
                )
            })
            .collect();
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster-haproxy.cfg"),
        )
        .unwrap();
        let config = template
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@SERVERS@", &servers);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let program = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (Debian package haproxy; scripts/test.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for<T>(what: &str, within: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The id of the node at `url`, which runs in cluster mode.
fn node_id(url: &str, token: &str) -> String {
    let (status, cluster) = call_at(url, Some(token), "GET", "/v1/cluster", None);
    assert_eq!(status, 200, "{cluster}");
    assert_eq!(cluster["mode"], "cluster", "{cluster}");
    cluster["node"].as_str().unwrap().to_string()
}

/// Steps a node has run, all flows and outcomes together.
fn steps_run(url: &str) -> f64 {
    metric_at(url, "switchboard_steps_total")
}

/// The steps of a contact that heard `status` for its task.
fn heard(lb: &str, token: &str, contact: &str, status: &str) -> usize {
    let (code, trace) = call_at(
        lb,
        Some(token),
        "GET",
        &format!("/v1/contacts/{contact}/trace"),
        None,
    );
    assert_eq!(code, 200, "{trace}");
    trace
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["event"]["type"] == "task-outcome" && s["event"]["status"] == status)
        .count()
}

#[test]
fn three_nodes_behind_haproxy_share_the_work_and_survive_losing_the_leader() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--store", address.as_str(), "--queue", "sales"];
    let first = ivr_server(dirs[0].path(), &args);
    // The admin token is the cluster's (kept in the database); the others' CLI finds it here.
    for dir in &dirs[1..] {
        std::fs::write(dir.path().join("admin.token"), &first.token).unwrap();
    }
    let mut nodes: Vec<Option<Server>> = vec![Some(first)];
    for dir in &dirs[1..] {
        nodes.push(Some(ivr_server(dir.path(), &args)));
    }
    let token = nodes[0].as_ref().unwrap().token.clone();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().url.clone())
        .collect();
    let ids: Vec<String> = urls.iter().map(|url| node_id(url, &token)).collect();
    // Every node sees all three and the same leader.
    let leader = wait_for(
        "every node to see three nodes and one leader",
        Duration::from_secs(10),
        || {
            let views: Vec<Value> = urls
                .iter()
                .map(|url| call_at(url, Some(&token), "GET", "/v1/cluster", None).1)
                .collect();
            let leader = views[0]["leader"].as_str()?.to_string();
            views
                .iter()
                .all(|v| {
                    v["nodes"].as_array().map(Vec::len) == Some(3) && v["leader"] == leader.as_str()
                })
                .then_some(leader)
        },
    );
    let backends: Vec<&str> = urls.iter().map(String::as_str).collect();
    let haproxy = Haproxy::start(&backends);
    let lb = haproxy.url.as_str();
    let call = |method: &str, path: &str, body: Option<Value>| {
        call_at(lb, Some(&token), method, path, body)
    };

    // Two agents, made and made available through the load balancer (so on different nodes).
    let mut agents = Vec::new();
    for name in ["ana", "bob"] {
        let (status, made) = call(
            "PUT",
            &format!("/v1/agents/{name}"),
            Some(json!({"attributes": {}, "capacity": {"voice": 1}})),
        );
        assert_eq!(status, 200, "{made}");
        let agent_token = made["token"].as_str().unwrap().to_string();
        let (status, body) = call_at(
            lb,
            Some(&agent_token),
            "PUT",
            "/agent/v1/activity",
            Some(json!({"activity": "available"})),
        );
        assert_eq!(status, 200, "{body}");
        agents.push(agent_token);
    }
    let offer_of = |agent: &str| offer_at(lb, agent);

    // A caller presses 1: each request may land on another node.
    let new_caller = |n: u32| -> String {
        let (status, started) = call(
            "POST",
            "/v1/contacts",
            Some(
                json!({"channel": "voice", "from": format!("+1555000{n:04}"), "to": "+15550100", "flow": "ivr-menu"}),
            ),
        );
        assert_eq!(status, 201, "{started}");
        let contact = started["contact"].as_str().unwrap().to_string();
        let (status, step) = call(
            "POST",
            &format!("/v1/contacts/{contact}/events"),
            Some(json!({"type": "input", "digits": "1"})),
        );
        assert_eq!(status, 200, "{step}");
        assert!(
            step["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["type"] == "enqueue"),
            "{step}"
        );
        contact
    };
    let first_caller = new_caller(1);
    // Offered to one of the two agents, whichever node made the offer.
    let (first_agent, offer) =
        wait_for("the first caller's offer", Duration::from_secs(10), || {
            agents
                .iter()
                .find_map(|a| offer_of(a).map(|r| (a.clone(), r)))
        });
    let (status, task) = call_at(
        lb,
        Some(&first_agent),
        "POST",
        &format!("/agent/v1/reservations/{offer}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{task}");
    let first_task = task["id"].as_str().unwrap().to_string();
    wait_for(
        "the flow to hear `assigned`",
        Duration::from_secs(10),
        || (heard(lb, &token, &first_caller, "assigned") == 1).then_some(()),
    );

    // A second caller is offered to the other agent, who does not answer yet.
    let second_agent = agents.iter().find(|a| **a != first_agent).unwrap().clone();
    let second_caller = new_caller(2);
    let open_offer = wait_for("the second caller's offer", Duration::from_secs(10), || {
        offer_of(&second_agent)
    });

    // Steps ran on more than one node: round robin sent each caller's first step and its digit
    // to different nodes, and the contact went on where it was.
    let stepping = nodes
        .iter()
        .flatten()
        .filter(|n| steps_run(&n.url) > 0.0)
        .count();
    assert!(stepping >= 2, "only {stepping} node(s) ran steps");

    // Kill the leader.
    let leader_index = ids.iter().position(|id| *id == leader).unwrap();
    let killed_at = Instant::now();
    nodes[leader_index].take().unwrap().kill();
    let new_leader = wait_for(
        "another node to take the router lease",
        Duration::from_secs(15),
        || {
            let (status, view) = call("GET", "/v1/cluster", None);
            (status == 200)
                .then(|| view["leader"].as_str().map(str::to_string))
                .flatten()
                .filter(|l| *l != leader)
        },
    );
    let failover = killed_at.elapsed();
    eprintln!("leader {leader} killed; {new_leader} took over in {failover:?}");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );

    // The open offer survived the failover and can be accepted through any node.
    assert_eq!(
        offer_of(&second_agent).as_deref(),
        Some(open_offer.as_str())
    );
    let (status, task) = call_at(
        lb,
        Some(&second_agent),
        "POST",
        &format!("/agent/v1/reservations/{open_offer}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{task}");
    wait_for(
        "the second flow to hear `assigned`",
        Duration::from_secs(10),
        || (heard(lb, &token, &second_caller, "assigned") == 1).then_some(()),
    );

    // The first agent finishes: the first flow hears `completed`, once.
    let (status, done) = call_at(
        lb,
        Some(&first_agent),
        "POST",
        &format!("/agent/v1/tasks/{first_task}/complete"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{done}");
    wait_for(
        "the first flow to hear `completed`",
        Duration::from_secs(10),
        || (heard(lb, &token, &first_caller, "completed") == 1).then_some(()),
    );
    // New callers still reach an agent: the new leader offers them.
    let third_caller = new_caller(3);
    let offer = wait_for("the third caller's offer", Duration::from_secs(10), || {
        offer_of(&first_agent)
    });
    let (status, _) = call_at(
        lb,
        Some(&first_agent),
        "POST",
        &format!("/agent/v1/reservations/{offer}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    wait_for(
        "the third flow to hear `assigned`",
        Duration::from_secs(10),
        || (heard(lb, &token, &third_caller, "assigned") == 1).then_some(()),
    );
    // The lost node is let go by the leader: two nodes left, none lost.
    wait_for(
        "the lost node to be let go",
        Duration::from_secs(15),
        || {
            let (_, view) = call("GET", "/v1/cluster", None);
            (view["nodes"].as_array().map(Vec::len) == Some(2)
                && view["lost"].as_array().is_some_and(Vec::is_empty))
            .then_some(())
        },
    );
    // Each flow heard each outcome exactly once.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(heard(lb, &token, &first_caller, "assigned"), 1);
    assert_eq!(heard(lb, &token, &first_caller, "completed"), 1);
    assert_eq!(heard(lb, &token, &second_caller, "assigned"), 1);
}

#[test]
fn events_for_one_contact_sent_to_two_nodes_at_once_get_consecutive_steps_and_none_is_lost() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--store", address.as_str(), "--queue", "sales"];
    let a = ivr_server(dirs[0].path(), &args);
    std::fs::write(dirs[1].path().join("admin.token"), &a.token).unwrap();
    let b = ivr_server(dirs[1].path(), &args);
    let token = a.token.clone();
    let (status, started) = call_at(
        &a.url,
        Some(&token),
        "POST",
        "/v1/contacts",
        Some(
            json!({"channel": "voice", "from": "+15550009999", "to": "+15550100", "flow": "ivr-menu"}),
        ),
    );
    assert_eq!(status, 201, "{started}");
    let contact = started["contact"].as_str().unwrap().to_string();

    // Each node gets PER_NODE presses of `*` (the menu again), all sent at the same time.
    const PER_NODE: usize = 12;
    let barrier = std::sync::Barrier::new(2 * PER_NODE);
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2 * PER_NODE)
            .map(|i| {
                let url = if i % 2 == 0 { &a.url } else { &b.url };
                let (token, contact, barrier) = (&token, &contact, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    call_at(
                        url,
                        Some(token),
                        "POST",
                        &format!("/v1/contacts/{contact}/events"),
                        Some(json!({"type": "input", "digits": "*"})),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
    }

    // Every press is a step of its own, numbered one after another, whichever node ran it.
    let (status, trace) = call_at(
        &b.url,
        Some(&token),
        "GET",
        &format!("/v1/contacts/{contact}/trace"),
        None,
    );
    assert_eq!(status, 200, "{trace}");
    let steps: Vec<u64> = trace
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=(1 + 2 * PER_NODE as u64)).collect();
    assert_eq!(steps, expected, "steps lost, repeated or out of order");
    let presses = trace
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["event"]["type"] == "input" && s["event"]["digits"] == "*")
        .count();
    assert_eq!(presses, 2 * PER_NODE);
    // Both nodes ran presses (A also ran the start), and both read the same contact.
    let (on_a, on_b) = (steps_run(&a.url), steps_run(&b.url));
    assert!(on_a > 1.0 && on_b > 0.0, "steps: {on_a} on A, {on_b} on B");
    let on_a = contact_at(&a.url, &token, &contact);
    let on_b = contact_at(&b.url, &token, &contact);
    assert_eq!(on_a["steps"], on_b["steps"], "{on_a} / {on_b}");
}

#[test]
fn a_deploy_acknowledged_by_one_node_is_what_every_node_starts_afterwards() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--store", address.as_str()];
    let first = ivr_server(dirs[0].path(), &args);
    for dir in &dirs[1..] {
        std::fs::write(dir.path().join("admin.token"), &first.token).unwrap();
    }
    let mut nodes = vec![first];
    for dir in &dirs[1..] {
        nodes.push(ivr_server(dir.path(), &args));
    }
    let token = nodes[0].token.clone();
    let start = |url: &str, n: usize| -> (u16, Value) {
        call_at(
            url,
            Some(&token),
            "POST",
            "/v1/contacts",
            Some(
                json!({"channel": "voice", "from": format!("+1555{n:07}"), "to": "+15550100", "flow": "ivr-menu"}),
            ),
        )
    };
    // Every node runs version 1 (and keeps it loaded).
    for (i, node) in nodes.iter().enumerate() {
        let (status, report) = start(&node.url, i);
        assert_eq!(status, 201, "{report}");
        assert_eq!(report["version"], 1, "{report}");
    }

    // Node A acknowledges version 2.
    let (status, deployed) = nodes[0].deploy("ivr-menu", &crate::support::guest("ivr-menu-v2"));
    assert_eq!(status, 201, "{deployed}");
    assert_eq!(deployed["version"], 2, "{deployed}");
    // Acknowledged once every node had it loaded: none compiles it at a customer's expense.
    for node in &nodes[1..] {
        let (status, list) = call_at(
            &node.url,
            Some(&token),
            "GET",
            "/v1/flows/ivr-menu/versions",
            None,
        );
        assert_eq!(status, 200, "{list}");
        let v2 = list["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["version"] == 2)
            .unwrap_or_else(|| panic!("{list}"));
        assert_eq!(
            v2["loaded"], true,
            "{} had not loaded version 2: {v2}",
            node.url
        );
        assert_eq!(list["live"], 2, "{list}");
    }

    // Then 300 contacts start at once, spread over the three nodes: each runs version 2.
    const CONTACTS: usize = 300;
    const THREADS: usize = 6;
    let urls: Vec<&str> = nodes.iter().map(|n| n.url.as_str()).collect();
    let exceptions: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (urls, start) = (&urls, &start);
                s.spawn(move || {
                    let mut wrong = Vec::new();
                    for n in (t..CONTACTS).step_by(THREADS) {
                        let url = urls[n % urls.len()];
                        let (status, report) = start(url, 1000 + n);
                        if status != 201 || report["version"] != 2 {
                            wrong.push(format!("{url}: {status} {report}"));
                        }
                    }
                    wrong
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        exceptions.is_empty(),
        "{} of {CONTACTS} contacts did not start on version 2: {:?}",
        exceptions.len(),
        &exceptions[..exceptions.len().min(5)]
    );
}

#[test]
fn a_thousand_tasks_made_on_three_nodes_are_each_assigned_once_with_agents_on_all_three() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--store", address.as_str(), "--queue", "sales"];
    let first = ivr_server(dirs[0].path(), &args);
    for dir in &dirs[1..] {
        std::fs::write(dir.path().join("admin.token"), &first.token).unwrap();
    }
    let mut nodes = vec![first];
    for dir in &dirs[1..] {
        nodes.push(ivr_server(dir.path(), &args));
    }
    let token = nodes[0].token.clone();
    let urls: Vec<&str> = nodes.iter().map(|n| n.url.as_str()).collect();

    // Six agents, each made available through another node.
    const AGENTS: usize = 6;
    let agents: Vec<String> = (0..AGENTS)
        .map(|i| {
            let url = urls[i % 3];
            let (status, made) = call_at(
                url,
                Some(&token),
                "PUT",
                &format!("/v1/agents/agent{i}"),
                Some(json!({"attributes": {}, "capacity": {"voice": 1}})),
            );
            assert_eq!(status, 200, "{made}");
            let agent = made["token"].as_str().unwrap().to_string();
            let (status, body) = call_at(
                url,
                Some(&agent),
                "PUT",
                "/agent/v1/activity",
                Some(json!({"activity": "available"})),
            );
            assert_eq!(status, 200, "{body}");
            agent
        })
        .collect();

    const TASKS: usize = 1000;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(240);
    let (created, taken) = std::thread::scope(|s| {
        // Three makers, one per node, 1,000 tasks in all.
        let makers: Vec<_> = (0..3)
            .map(|m| {
                let (url, token) = (urls[m], &token);
                s.spawn(move || {
                    (m..TASKS)
                        .step_by(3)
                        .map(|n| {
                            let (status, task) = call_at(
                                url,
                                Some(token),
                                "POST",
                                "/v1/tasks",
                                Some(json!({"queue": "sales", "attributes": {"n": n}})),
                            );
                            assert_eq!(status, 201, "{task}");
                            task["id"].as_str().unwrap().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // Each agent looks for its offer on one node, accepts on the next, completes on the
        // third, until every task is done.
        let workers: Vec<_> = agents
            .iter()
            .enumerate()
            .map(|(i, agent)| {
                let (urls, done) = (&urls, &done);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut turn = i;
                    while done.load(std::sync::atomic::Ordering::SeqCst) < TASKS {
                        assert!(
                            Instant::now() < deadline,
                            "the tasks were not all done in time"
                        );
                        turn += 1;
                        let now = turn;
                        let at = |k: usize| urls[(now + k) % urls.len()];
                        let (status, me) = call_at(at(0), Some(agent), "GET", "/agent/v1/me", None);
                        assert_eq!(status, 200, "{me}");
                        let Some(offer) = me["reservation"]["id"].as_str() else {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        };
                        let (status, task) = call_at(
                            at(1),
                            Some(agent),
                            "POST",
                            &format!("/agent/v1/reservations/{offer}/accept"),
                            Some(json!({})),
                        );
                        if status != 200 {
                            // The offer ran out or was withdrawn meanwhile: it goes elsewhere.
                            assert!(
                                [404, 409].contains(&status),
                                "accept answered {status}: {task}"
                            );
                            continue;
                        }
                        let id = task["id"].as_str().unwrap().to_string();
                        let (status, finished) = call_at(
                            at(2),
                            Some(agent),
                            "POST",
                            &format!("/agent/v1/tasks/{id}/complete"),
                            Some(json!({})),
                        );
                        assert_eq!(status, 200, "{finished}");
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        mine.push(id);
                    }
                    mine
                })
            })
            .collect();
        let created: Vec<String> = makers.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let taken: Vec<Vec<String>> = workers.into_iter().map(|h| h.join().unwrap()).collect();
        (created, taken)
    });

    // Each task was accepted by exactly one agent, once; none is left open.
    let mut all: Vec<&String> = taken.iter().flatten().collect();
    assert_eq!(
        all.len(),
        TASKS,
        "accepted {} times for {TASKS} tasks",
        all.len()
    );
    all.sort();
    all.dedup();
    assert_eq!(all.len(), TASKS, "a task was accepted twice");
    let mut made: Vec<&String> = created.iter().collect();
    made.sort();
    assert_eq!(made, all, "the tasks accepted are not the tasks made");
    let busy = taken.iter().filter(|t| !t.is_empty()).count();
    assert!(busy >= 3, "only {busy} agents took tasks");
    // Every node's view catches up with the last completion (nodes poll for changes).
    for url in &urls {
        wait_for("no open task left", Duration::from_secs(5), || {
            let (status, open) = call_at(url, Some(&token), "GET", "/v1/tasks", None);
            assert_eq!(status, 200);
            (open.as_array().map(Vec::len) == Some(0)).then_some(())
        });
    }
    for id in created.iter().step_by(97) {
        let (status, task) = call_at(
            urls[2],
            Some(&token),
            "GET",
            &format!("/v1/tasks/{id}"),
            None,
        );
        assert_eq!(status, 200, "{task}");
        assert_eq!(task["status"], "completed", "{task}");
    }
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_task_and_assigns_none_twice() {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--store", address.as_str(), "--queue", "sales"];
    let first = ivr_server(dirs[0].path(), &args);
    for dir in &dirs[1..] {
        std::fs::write(dir.path().join("admin.token"), &first.token).unwrap();
    }
    let mut nodes = vec![Some(first)];
    for dir in &dirs[1..] {
        nodes.push(Some(ivr_server(dir.path(), &args)));
    }
    let token = nodes[0].as_ref().unwrap().token.clone();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().url.clone())
        .collect();
    let backends: Vec<&str> = urls.iter().map(String::as_str).collect();
    let haproxy = Haproxy::start(&backends);
    let lb = haproxy.url.as_str();
    let ids: Vec<String> = urls.iter().map(|url| node_id(url, &token)).collect();
    let leader = wait_for("a leader", Duration::from_secs(10), || {
        let (_, view) = call_at(&urls[0], Some(&token), "GET", "/v1/cluster", None);
        view["leader"].as_str().map(str::to_string)
    });

    const AGENTS: usize = 6;
    let agents: Vec<String> = (0..AGENTS)
        .map(|i| {
            let (status, made) = call_at(
                lb,
                Some(&token),
                "PUT",
                &format!("/v1/agents/agent{i}"),
                Some(json!({"attributes": {}, "capacity": {"voice": 1}})),
            );
            assert_eq!(status, 200, "{made}");
            let agent = made["token"].as_str().unwrap().to_string();
            let (status, body) = call_at(
                lb,
                Some(&agent),
                "PUT",
                "/agent/v1/activity",
                Some(json!({"activity": "available"})),
            );
            assert_eq!(status, 200, "{body}");
            agent
        })
        .collect();

    const TASKS: usize = 1000;
    let completed = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    // Task -> the agents whose accept of it was answered 200.
    let accepted: Mutex<HashMap<String, Vec<usize>>> = Mutex::new(HashMap::new());
    let deadline = Instant::now() + Duration::from_secs(300);
    let (acknowledged, failover) = std::thread::scope(|s| {
        let makers: Vec<_> = (0..3)
            .map(|m| {
                let token = &token;
                s.spawn(move || {
                    let mut made = Vec::new();
                    for n in (m..TASKS).step_by(3) {
                        // A request the dying node never answered (HAProxy's 502/503) may
                        // or may not have made its task: only 201s count as acknowledged.
                        let (status, task) = call_at(
                            lb,
                            Some(token),
                            "POST",
                            "/v1/tasks",
                            Some(json!({"queue": "sales", "attributes": {"n": n}})),
                        );
                        if status == 201 {
                            made.push(task["id"].as_str().unwrap().to_string());
                        } else {
                            assert!(status >= 500, "create answered {status}: {task}");
                        }
                    }
                    made
                })
            })
            .collect();
        for (i, agent) in agents.iter().enumerate() {
            let (completed, finished, accepted) = (&completed, &finished, &accepted);
            s.spawn(move || {
                while !finished.load(SeqCst) {
                    assert!(
                        Instant::now() < deadline,
                        "the tasks were not all done in time"
                    );
                    let (status, me) = call_at(lb, Some(agent), "GET", "/agent/v1/me", None);
                    if status != 200 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    // Tasks held (also one whose accept was not answered): finish them.
                    for task in me["tasks"].as_array().into_iter().flatten() {
                        let id = task["id"].as_str().unwrap();
                        let (status, _) = call_at(
                            lb,
                            Some(agent),
                            "POST",
                            &format!("/agent/v1/tasks/{id}/complete"),
                            Some(json!({})),
                        );
                        if status == 200 {
                            completed.fetch_add(1, SeqCst);
                        }
                    }
                    let Some(offer) = me["reservation"]["id"].as_str() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let (status, task) = call_at(
                        lb,
                        Some(agent),
                        "POST",
                        &format!("/agent/v1/reservations/{offer}/accept"),
                        Some(json!({})),
                    );
                    if status == 200 {
                        let id = task["id"].as_str().unwrap().to_string();
                        accepted.lock().unwrap().entry(id).or_default().push(i);
                    }
                }
            });
        }
        // A third of the way through, the leader is killed.
        wait_for(
            "a third of the tasks done",
            Duration::from_secs(120),
            || (completed.load(SeqCst) >= TASKS / 3).then_some(()),
        );
        let index = ids.iter().position(|id| *id == leader).unwrap();
        let killed = Instant::now();
        nodes[index].take().unwrap().kill();
        let survivor = &urls[(index + 1) % 3];
        wait_for("another leader", Duration::from_secs(20), || {
            let (_, view) = call_at(survivor, Some(&token), "GET", "/v1/cluster", None);
            view["leader"].as_str().filter(|l| *l != leader).map(|_| ())
        });
        let failover = killed.elapsed();
        let acknowledged: Vec<String> =
            makers.into_iter().flat_map(|h| h.join().unwrap()).collect();
        // Done when no task is open any more, as two looks a moment apart agree.
        wait_for("every task done", Duration::from_secs(180), || {
            let open = |_: ()| {
                let (status, open) = call_at(survivor, Some(&token), "GET", "/v1/tasks", None);
                status == 200 && open.as_array().is_some_and(Vec::is_empty)
            };
            let done = open(()) && {
                std::thread::sleep(Duration::from_millis(600));
                open(())
            };
            done.then_some(())
        });
        finished.store(true, SeqCst);
        (acknowledged, failover)
    });
    eprintln!("leader {leader} killed under load; another node led after {failover:?}");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );

    // Nothing acknowledged is lost: every task made is completed, by one agent.
    let accepted = accepted.into_inner().unwrap();
    let twice: Vec<_> = accepted.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "accepted by more than one answer: {twice:?}"
    );
    let survivor = nodes.iter().flatten().next().unwrap().url.clone();
    let mut agents_of: HashSet<String> = HashSet::new();
    for id in &acknowledged {
        let (status, task) = call_at(
            &survivor,
            Some(&token),
            "GET",
            &format!("/v1/tasks/{id}"),
            None,
        );
        assert_eq!(status, 200, "{task}");
        assert_eq!(task["status"], "completed", "{task}");
        let agent = task["agent"]
            .as_str()
            .or(task["agent"].as_str())
            .unwrap_or_default();
        assert!(!agent.is_empty(), "{task}");
        agents_of.insert(agent.to_string());
    }
    assert!(
        acknowledged.len() >= TASKS * 9 / 10,
        "only {} of {TASKS} tasks were acknowledged",
        acknowledged.len()
    );
    assert!(
        agents_of.len() >= 3,
        "only {} agents took tasks",
        agents_of.len()
    );
    eprintln!(
        "{} of {TASKS} tasks acknowledged, all completed; {} accepts answered 200, none twice; {} agents",
        acknowledged.len(),
        accepted.len(),
        agents_of.len()
    );
}

#[test]
fn a_leader_stopped_past_its_lease_and_resumed_leads_no_more_and_disturbs_nothing() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--store", address.as_str(), "--queue", "sales"];
    let a = ivr_server(dirs[0].path(), &args);
    std::fs::write(dirs[1].path().join("admin.token"), &a.token).unwrap();
    let b = ivr_server(dirs[1].path(), &args);
    let token = a.token.clone();
    let view = |url: &str| call_at(url, Some(&token), "GET", "/v1/cluster", None).1;
    let a_id = view(&a.url)["node"].as_str().unwrap().to_string();
    wait_for("A to lead", Duration::from_secs(10), || {
        (view(&b.url)["leader"] == a_id.as_str()).then_some(())
    });
    let (status, made) = call_at(
        &b.url,
        Some(&token),
        "PUT",
        "/v1/agents/ana",
        Some(json!({"attributes": {}, "capacity": {"voice": 1}})),
    );
    assert_eq!(status, 200, "{made}");
    let ana = made["token"].as_str().unwrap().to_string();
    let (status, body) = call_at(
        &b.url,
        Some(&ana),
        "PUT",
        "/agent/v1/activity",
        Some(json!({"activity": "available"})),
    );
    assert_eq!(status, 200, "{body}");

    // A is stopped (not killed) past its lease: B takes the router over.
    let signal = |sig: &str| signal(&a, sig);
    signal("-STOP");
    let b_id = view(&b.url)["node"].as_str().unwrap().to_string();
    let stopped = Instant::now();
    wait_for("B to lead", Duration::from_secs(20), || {
        (view(&b.url)["leader"] == b_id.as_str()).then_some(())
    });
    eprintln!("B leads {:?} after A was stopped", stopped.elapsed());
    // While A sleeps, a task is made on B and offered to Ana by the new leader.
    let (status, task) = call_at(
        &b.url,
        Some(&token),
        "POST",
        "/v1/tasks",
        Some(json!({"queue": "sales"})),
    );
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    let offer = wait_for("the offer to Ana", Duration::from_secs(10), || {
        offer_at(&b.url, &ana)
    });

    // A wakes up with its old view: it does not lead again, and its clock changes nothing.
    signal("-CONT");
    wait_for("A to see B lead", Duration::from_secs(5), || {
        (view(&a.url)["leader"] == b_id.as_str()).then_some(())
    });
    for _ in 0..30 {
        assert_eq!(view(&a.url)["leader"], b_id.as_str(), "A leads again");
        assert_eq!(view(&b.url)["leader"], b_id.as_str());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Ana accepts B's offer through A: the task is hers, once, as both nodes see it.
    let (status, accepted) = call_at(
        &a.url,
        Some(&ana),
        "POST",
        &format!("/agent/v1/reservations/{offer}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{accepted}");
    for url in [&a.url, &b.url] {
        wait_for("the task assigned to Ana", Duration::from_secs(5), || {
            let (_, t) = call_at(url, Some(&token), "GET", &format!("/v1/tasks/{id}"), None);
            (t["status"] == "assigned" && t["agent"] == "ana").then_some(())
        });
    }
}

/// The next chat message the desk is pushed, skipping router notices.
fn desk_hears(desk: &mut crate::support::Desk, text: &str) {
    loop {
        let pushed = desk.next();
        if pushed["type"] == "message" {
            assert_eq!(pushed["text"], text, "{pushed}");
            return;
        }
    }
}

#[test]
fn a_chat_through_haproxy_and_a_desk_on_another_node_talk_both_ways_and_the_widget_survives_losing_its_node()
 {
    use std::io::{BufRead as _, Write as _};
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./scripts/test.sh (it runs npm ci in tests/browser)"
    );
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Node A runs the order-status flow on chat:support, with a support queue and sara.
    let (first, sara) = crate::support::chat_server_with(dirs[0].path(), &["--store", &address]);
    for dir in &dirs[1..] {
        std::fs::write(dir.path().join("admin.token"), &first.token).unwrap();
    }
    let token = first.token.clone();
    let mut nodes: Vec<Option<Server>> = vec![Some(first)];
    for dir in &dirs[1..] {
        nodes.push(Some(Server::start(dir.path(), &["--store", &address])));
    }
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().url.clone())
        .collect();
    let ids: Vec<String> = urls.iter().map(|url| node_id(url, &token)).collect();
    let haproxy = Haproxy::start(&urls.iter().map(String::as_str).collect::<Vec<_>>());

    let mut browser = Command::new("node")
        .current_dir(&browser_dir)
        .arg("cluster-chat.mjs")
        .arg(&haproxy.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut to_browser = browser.stdin.take().unwrap();
    let (said, from_browser) = std::sync::mpsc::channel::<String>();
    let stdout = browser.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("browser: {line}");
            if said.send(line).is_err() {
                return;
            }
        }
    });
    let browser_says = |prefix: &str| -> String {
        let line = from_browser
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("the browser did not get to {prefix:?}"));
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line[prefix.len()..].trim().to_string()
    };

    // The visitor asked for an agent through HAProxy: the node holding the widget's socket
    // is the contact's.
    let contact = browser_says("asked");
    let (status, session) = call_at(
        &haproxy.url,
        Some(&token),
        "GET",
        &format!("/v1/contacts/{contact}"),
        None,
    );
    assert_eq!(status, 200, "{session}");
    let visitor_node = ids
        .iter()
        .position(|id| session["node"] == id.as_str())
        .unwrap_or_else(|| panic!("the chat is held by one of the nodes: {session}"));
    // The agent's desk is on another node.
    let desk_node = (visitor_node + 1) % 3;
    let desk_url = urls[desk_node].clone();
    let mut desk = crate::support::desk(nodes[desk_node].as_ref().unwrap(), &sara);
    let task = accept_next_offer(&desk_url, &sara, Duration::from_secs(15));
    let write = |url: &str, text: &str| {
        let (status, body) = call_at(
            url,
            Some(&sara),
            "POST",
            &format!("/agent/v1/tasks/{task}/messages"),
            Some(json!({ "text": text })),
        );
        assert_eq!(status, 200, "{body}");
    };

    // Widget (one node) to desk (another), and back.
    desk_hears(&mut desk, "hello from the widget");
    write(&desk_url, "Hello from the desk");
    browser_says("talked");

    // The widget's node dies; the agent writes while the widget is away.
    nodes[visitor_node].take().unwrap().kill();
    write(&desk_url, "Sent while you were away");
    writeln!(to_browser, "killed").unwrap();
    browser_says("reconnected");
    // After a reload, wherever HAProxy sends it, the widget has its history, the customer
    // writes to the desk and the desk's answer reaches the widget.
    desk_hears(&mut desk, "still here");
    write(&desk_url, "Good to see you");
    browser_says("resumed ok");
    drop(to_browser);
    assert!(
        browser.wait().unwrap().success(),
        "the browser script failed"
    );
    drop(haproxy);
}

/// A token revoked on node A is refused there at once and on node B within a second (B keeps
/// who a token is for a second); a setting changed on A reaches B's flows within a second.
#[test]
fn a_token_revoked_and_a_setting_changed_on_one_node_hold_on_the_others_within_a_second() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = ivr_server(dirs[0].path(), &["--store", &address]);
    std::fs::write(dirs[1].path().join("admin.token"), &a.token).unwrap();
    let b = Server::start(dirs[1].path(), &["--store", &address]);
    let (status, _) = a.call(
        "POST",
        "/v1/users",
        Some(json!({"name": "sam", "role": "supervisor"})),
    );
    assert_eq!(status, 201);
    let (status, made) = a.call(
        "POST",
        "/v1/users/sam/tokens",
        Some(json!({"label": "laptop"})),
    );
    assert_eq!(status, 201, "{made}");
    let sam = made["token"].as_str().unwrap().to_string();
    for node in [&a, &b] {
        let (status, body) = node.call_as(Some(&sam), "GET", "/v1/queues", None);
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = a.call(
        "DELETE",
        &format!("/v1/tokens/{}", made["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200);
    let revoked = Instant::now();
    let (status, _) = a.call_as(Some(&sam), "GET", "/v1/queues", None);
    assert_eq!(status, 401, "refused at once where it was revoked");
    wait_for("node B refuses the token", Duration::from_secs(3), || {
        let (status, _) = b.call_as(Some(&sam), "GET", "/v1/queues", None);
        (status == 401).then_some(())
    });
    assert!(
        revoked.elapsed() < Duration::from_millis(2500),
        "node B took {:?}",
        revoked.elapsed()
    );

    // B's flow read the setting (absent) just before A changes it.
    let start_on_b = || {
        let (status, report) = call_at(
            &b.url,
            Some(&a.token),
            "POST",
            "/v1/contacts",
            Some(
                json!({"channel": "voice", "from": "+15550001", "to": "+15550100", "flow": "ivr-menu"}),
            ),
        );
        assert_eq!(status, 201, "{report}");
        report
    };
    assert!(!start_on_b().to_string().contains("welcome-2027"));
    let (status, body) = a.call(
        "PUT",
        "/v1/flows/ivr-menu/settings",
        Some(json!({"welcome_prompt": "welcome-2027"})),
    );
    assert_eq!(status, 200, "{body}");
    let changed = Instant::now();
    wait_for(
        "node B's flow reads the new setting",
        Duration::from_secs(3),
        || {
            start_on_b()
                .to_string()
                .contains("welcome-2027")
                .then_some(())
        },
    );
    assert!(
        changed.elapsed() < Duration::from_millis(2500),
        "node B took {:?}",
        changed.elapsed()
    );
}

/// A deploy made while a node is still starting (joined, its flows not ready yet: it waits
/// 3 s after joining) is answered by that node once it is ready, not waited out (30 s).
#[test]
fn a_deploy_while_a_node_starts_is_loaded_there_without_waiting_it_out() {
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = ivr_server(dirs[0].path(), &["--store", &address]);
    std::fs::write(dirs[1].path().join("admin.token"), &a.token).unwrap();
    let starting = {
        let (dir, address) = (dirs[1].path().to_path_buf(), address.clone());
        std::thread::spawn(move || {
            Server::start_with_env(
                &dir,
                &["--store", &address],
                &[("SWITCHBOARD_FAILPOINT", "slow-join")],
            )
        })
    };
    // B is live to A (its heartbeat is in) before it can load anything.
    wait_for("node B joined", Duration::from_secs(20), || {
        let (_, cluster) = call_at(&a.url, Some(&a.token), "GET", "/v1/cluster", None);
        (cluster["nodes"].as_array()?.len() == 2).then_some(())
    });
    let asked = Instant::now();
    let (status, deployed) = a.deploy("ivr-menu", &crate::support::guest("ivr-menu-v2"));
    let took = asked.elapsed();
    assert_eq!(status, 201, "{deployed}");
    let b = starting.join().unwrap();
    assert!(
        took < Duration::from_secs(20),
        "the deploy waited out the starting node: {took:?}"
    );
    let (status, list) = call_at(
        &b.url,
        Some(&b.token),
        "GET",
        "/v1/flows/ivr-menu/versions",
        None,
    );
    assert_eq!(status, 200, "{list}");
    let v2 = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(v2["loaded"], true, "{v2}");
}

/// A widget resumes its chat on node B while the agent's line, written on node A, is still
/// on its way to B (B's bus hands messages on 2 s late): the line is in the history, and the
/// resumed socket does not get it a second time when it arrives; the socket that was open
/// all along gets it once.
#[test]
fn a_chat_resumed_while_a_line_crosses_between_nodes_shows_it_once() {
    use crate::chat::{connect, next, send};
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, sara) = crate::support::chat_server_with(dirs[0].path(), &["--store", &address]);
    std::fs::write(dirs[1].path().join("admin.token"), &a.token).unwrap();
    let b = Server::start_with_env(
        dirs[1].path(),
        &["--store", &address],
        &[("SWITCHBOARD_FAILPOINT", "bus-late")],
    );
    let ws = b.url.replace("http://", "ws://");

    // The visitor, on B, asks for an agent; sara accepts on A.
    let mut visitor = connect(&format!("{ws}/chat/v1/ws"));
    send(
        &mut visitor,
        json!({"type": "join", "address": "chat:support", "name": "Ada"}),
    );
    let contact = next(&mut visitor)["contact"].as_str().unwrap().to_string();
    send(
        &mut visitor,
        json!({"type": "message", "text": "I want an agent"}),
    );
    let task = accept_next_offer(&a.url, &sara, Duration::from_secs(15));

    // She writes on A; at once the widget resumes on B, in a second socket.
    let (status, body) = call_at(
        &a.url,
        Some(&sara),
        "POST",
        &format!("/agent/v1/tasks/{task}/messages"),
        Some(json!({"text": "Line on its way"})),
    );
    assert_eq!(status, 200, "{body}");
    let mut resumed = connect(&format!("{ws}/chat/v1/ws"));
    send(
        &mut resumed,
        json!({"type": "join", "address": "chat:support", "resume": contact}),
    );
    let joined = next(&mut resumed);
    assert_eq!(joined["resumed"], true, "{joined}");
    let in_history: Vec<&Value> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["text"] == "Line on its way")
        .collect();
    assert_eq!(in_history.len(), 1, "{joined}");

    // The line reaches B over the bus: the first socket gets it.
    let live = loop {
        let pushed = next(&mut visitor);
        if pushed["text"] == "Line on its way" {
            break pushed;
        }
    };
    assert_eq!(live["id"], in_history[0]["id"], "{live}");
    // The resumed socket does not get it again (whatever else reaches it meanwhile).
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = resumed.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match resumed.read() {
            Ok(tungstenite::Message::Text(text)) => {
                assert!(
                    !text.contains("Line on its way"),
                    "the resumed widget got a line of its history again: {text}"
                );
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// In a private network: a PostgreSQL, node A with SIP (the sample IVR on +15550100) and node
/// B without, both on it; their data directories.
fn sip_node_and_another() -> (LocalPostgres, Vec<tempfile::TempDir>, Server, Server) {
    crate::sipp::private_network();
    let pg = LocalPostgres::start().unwrap();
    let address = pg.address();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = crate::support::sip_ivr_server(dirs[0].path(), &["--store", &address]);
    std::fs::write(dirs[1].path().join("admin.token"), &a.token).unwrap();
    let b = ivr_server(dirs[1].path(), &["--store", &address]);
    (pg, dirs, a, b)
}

/// Sends `sig` (such as `-STOP`) to a node's process.
fn signal(node: &Server, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig}");
}

/// A contact as node `url` reads it.
fn contact_at(url: &str, token: &str, contact: &str) -> Value {
    let (status, session) = call_at(
        url,
        Some(token),
        "GET",
        &format!("/v1/contacts/{contact}"),
        None,
    );
    assert_eq!(status, 200, "{session}");
    session
}

/// The id of the offer `agent` (their token) holds, as node `url` reads it.
fn offer_at(url: &str, agent: &str) -> Option<String> {
    let (status, me) = call_at(url, Some(agent), "GET", "/agent/v1/me", None);
    assert_eq!(status, 200, "{me}");
    me["reservation"]["id"].as_str().map(str::to_string)
}

/// Waits up to `within` for an offer to `agent` and accepts it on node `url`; the task's id.
fn accept_next_offer(url: &str, agent: &str, within: Duration) -> String {
    let offer = wait_for("the agent's offer", within, || offer_at(url, agent));
    let (status, task) = call_at(
        url,
        Some(agent),
        "POST",
        &format!("/agent/v1/reservations/{offer}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{task}");
    task["id"].as_str().unwrap().to_string()
}

/// A counter a node exposes, summed over its labels.
fn metric_at(url: &str, name: &str) -> f64 {
    let (status, text) = call_at(url, None, "GET", "/metrics", None);
    assert_eq!(status, 200);
    text.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_call_on_one_node_is_bridged_when_the_agent_accepts_on_another_and_ends_node_lost_with_its_node()
 {
    use crate::sipp::{Caller, Ear, agent_phone, free_port, sipp};
    let (_pg, dirs, a, b) = sip_node_and_another();
    let token = a.token.clone();
    let sip_a = a.sip.unwrap();
    let dir = dirs[0].path();

    // Alice's phone registers with node A; the caller dials node A.
    let alice = crate::support::agent(&a, "alice", json!({}), json!({"voice": 1}));
    let phone_ear = Ear::new();
    let (register, answer) = agent_phone(dir, "alice", &alice, phone_ear.port(), 60_000);
    let phone_port = free_port().to_string();
    sipp(dir, &register, sip_a, "alice", &["-p", &phone_port]).succeeds();
    let _phone = sipp(dir, &answer, sip_a, "alice", &["-p", &phone_port]);
    let caller_ear = Ear::new();
    let scenario = Caller::dial(caller_ear.port(), "+15554446")
        .answered()
        .pause(2500)
        .press_rfc4733("1")
        .expect_bye(60_000)
        .write(dir, "caller");
    let _caller = sipp(dir, &scenario, sip_a, "+15550100", &[]);

    // She accepts on node B; node A rings her phone and bridges the call.
    let task = accept_next_offer(&b.url, &alice, Duration::from_secs(20));
    wait_for("the bridge on node A", Duration::from_secs(15), || {
        (metric_at(&a.url, "switchboard_sip_calls_bridged_total") >= 1.0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let caller_media = caller_ear
        .from
        .lock()
        .unwrap()
        .expect("node A sent the caller audio");
    let before = phone_ear.loud_count();
    caller_ear.speak(caller_media, 40);
    std::thread::sleep(Duration::from_millis(300));
    let heard = phone_ear.loud_count() - before;
    assert!(
        heard >= 36,
        "alice heard {heard} of the caller's 40 packets"
    );
    let (_, assigned) = call_at(
        &b.url,
        Some(&token),
        "GET",
        &format!("/v1/tasks/{task}"),
        None,
    );
    assert_eq!(assigned["status"], "assigned", "{assigned}");
    let contact = assigned["contact"].as_str().unwrap().to_string();

    // Node A dies mid-call: the cluster ends the contact as node-lost and cancels its task,
    // and alice is free for the next caller.
    let killed = Instant::now();
    a.kill();
    let ended = wait_for(
        "the call to end as node-lost",
        Duration::from_secs(30),
        || {
            let session = contact_at(&b.url, &token, &contact);
            (session["status"]["state"] == "ended").then_some(session)
        },
    );
    eprintln!("the lost call ended {:?} after the kill", killed.elapsed());
    assert_eq!(ended["status"]["reason"], "node-lost", "{ended}");
    // The task is canceled just after the contact's last step is kept (in the same turn).
    let canceled = wait_for(
        "the assigned task to be let go",
        Duration::from_secs(5),
        || {
            let (_, task) = call_at(
                &b.url,
                Some(&token),
                "GET",
                &format!("/v1/tasks/{task}"),
                None,
            );
            (task["status"] != "assigned").then_some(task)
        },
    );
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    let (_, me) = call_at(&b.url, Some(&alice), "GET", "/agent/v1/me", None);
    assert!(
        me["tasks"].as_array().is_some_and(Vec::is_empty) && me["reservation"].is_null(),
        "alice holds nothing any more: {me}"
    );
    let (_, trace) = call_at(
        &b.url,
        Some(&token),
        "GET",
        &format!("/v1/contacts/{contact}/trace"),
        None,
    );
    assert_eq!(
        trace.as_array().unwrap().last().unwrap()["event"]["type"],
        "hangup",
        "the flow heard the hang-up: {trace}"
    );
}

#[test]
fn a_node_let_go_while_stopped_hangs_up_the_calls_the_cluster_ended_when_it_comes_back() {
    use crate::sipp::{Caller, Ear, sipp};
    let (_pg, dirs, a, b) = sip_node_and_another();
    let token = a.token.clone();
    let a_id = node_id(&a.url, &token);

    // A caller on node A waits in the sales queue (nobody is available).
    let caller_ear = Ear::new();
    let scenario = Caller::dial(caller_ear.port(), "+15554447")
        .answered()
        .pause(2500)
        .press_rfc4733("1")
        .expect_bye(30_000)
        .write(dirs[0].path(), "caller");
    let caller = sipp(dirs[0].path(), &scenario, a.sip.unwrap(), "+15550100", &[]);
    let contact = wait_for(
        "the caller to wait in the queue",
        Duration::from_secs(20),
        || {
            let (_, contacts) = call_at(&b.url, Some(&token), "GET", "/v1/contacts?limit=1", None);
            let c = contacts.as_array()?.first()?.clone();
            (c["status"]["state"] == "queued").then(|| c["id"].as_str().unwrap().to_string())
        },
    );

    // Node A stops answering (SIGSTOP) past its heartbeat: node B ends its call (node-lost)
    // and lets it go.
    let signal = |sig: &str| signal(&a, sig);
    signal("-STOP");
    wait_for(
        "node B to end the call and let A go",
        Duration::from_secs(30),
        || {
            let session = contact_at(&b.url, &token, &contact);
            let (_, cluster) = call_at(&b.url, Some(&token), "GET", "/v1/cluster", None);
            let known = cluster.to_string().contains(&a_id);
            (session["status"]["reason"] == "node-lost" && !known).then_some(())
        },
    );

    // A comes back: the caller still on its line is hung up at once (a BYE), not left talking
    // to a contact the cluster ended.
    let resumed = Instant::now();
    signal("-CONT");
    caller.succeeds();
    eprintln!(
        "the caller got the BYE {:?} after node A resumed",
        resumed.elapsed()
    );
    wait_for("node A to be live again", Duration::from_secs(10), || {
        let (_, cluster) = call_at(&b.url, Some(&token), "GET", "/v1/cluster", None);
        cluster.to_string().contains(&a_id).then_some(())
    });
}
