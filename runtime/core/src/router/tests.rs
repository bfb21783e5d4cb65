//! Matching, timers, news and restarts of the router, in-process on the in-memory store with
//! a hand-stepped clock: no server, no sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use super::*;
use crate::contract::Channel;
use crate::store::MemoryStore;

struct Bench {
    store: Arc<dyn Store>,
    now: Arc<AtomicU64>,
    router: Router,
}

impl Bench {
    fn new() -> Bench {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let now = Arc::new(AtomicU64::new(1_000_000));
        let router = Bench::open(&store, &now);
        Bench { store, now, router }
    }

    fn open(store: &Arc<dyn Store>, now: &Arc<AtomicU64>) -> Router {
        let clock = now.clone();
        Router::with_clock(
            store.clone(),
            Box::new(move || clock.load(Ordering::SeqCst)),
        )
        .unwrap()
    }

    /// The same store and clock, a new router: what a restart sees.
    fn restart(self) -> Bench {
        let router = Bench::open(&self.store, &self.now);
        Bench { router, ..self }
    }

    fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
        self.router.tick().unwrap();
    }

    fn queue(&self, name: &str, members: &str, targets: Vec<Target>) {
        self.router
            .define_queue(QueueConfig {
                members: members.into(),
                reservation_timeout_secs: 10,
                targets,
                ..QueueConfig::named(name)
            })
            .unwrap();
    }

    fn agent(&self, name: &str, attributes: serde_json::Value) {
        self.router
            .upsert_agent(name, attributes, BTreeMap::from([(Channel::Voice, 1)]))
            .unwrap();
        self.router.set_activity(name, "available").unwrap();
        self.now.fetch_add(1, Ordering::SeqCst);
    }

    fn task(&self, queue: &str, priority: i32, contact: Option<&str>) -> Task {
        self.router
            .create_task(NewTask {
                queue: queue.into(),
                channel: Channel::Voice,
                priority,
                attributes: json!({"language": "fr"}),
                timeout_secs: 0,
                contact: contact.map(str::to_string),
            })
            .unwrap()
    }

    fn offer(&self, agent: &str) -> Option<Reservation> {
        self.router.reservations_of(agent).pop()
    }

    /// The news waiting in a contact's inbox, oldest first.
    fn news(&self, contact: &str) -> Vec<Outcome> {
        self.store
            .scan_json(Tree::Inbox, &keys::of_contact(contact))
            .unwrap()
    }
}

#[test]
fn the_longest_idle_member_gets_the_offer_and_priority_overtakes_age() {
    let b = Bench::new();
    b.queue("billing", r#""billing" in worker.skills"#, Vec::new());
    b.agent("ann", json!({"skills": ["billing"]}));
    b.agent("bob", json!({"skills": ["sales"]}));
    b.agent("cat", json!({"skills": ["billing"]}));

    let first = b.task("billing", 0, None);
    assert_eq!(first.agent.as_deref(), Some("ann"), "idle longest");
    let second = b.task("billing", 0, None);
    assert_eq!(second.agent.as_deref(), Some("cat"), "bob is not a member");
    // Nobody free: an old low-priority task and a new urgent one wait...
    let old = b.task("billing", 0, None);
    let urgent = b.task("billing", 5, None);
    assert_eq!(old.status, TaskStatus::Pending);
    // ...and the urgent one goes first when Ann is free again.
    let r = b.offer("ann").unwrap();
    b.router.accept("ann", &r.id).unwrap();
    b.router.complete("ann", &first.id, None, None).unwrap();
    assert_eq!(b.offer("ann").unwrap().task, urgent.id);
}

#[test]
fn an_unanswered_offer_moves_on_and_three_misses_make_an_agent_unavailable() {
    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.agent("ann", json!({}));
    b.agent("bob", json!({}));
    let task = b.task("q", 0, None);
    assert_eq!(task.agent.as_deref(), Some("ann"));
    b.advance(9_999);
    assert_eq!(b.offer("ann").unwrap().task, task.id, "not yet");
    b.advance(1);
    assert!(b.offer("ann").is_none());
    assert_eq!(b.offer("bob").unwrap().task, task.id, "moved on to Bob");

    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.agent("ann", json!({}));
    for _ in 0..3 {
        b.task("q", 0, None);
        b.advance(10_000);
    }
    assert_eq!(b.router.agent("ann").unwrap()["activity"], "unavailable");
}

#[test]
fn a_plan_escalates_to_its_next_target_after_its_timeout() {
    let b = Bench::new();
    b.queue(
        "q",
        "",
        vec![
            Target {
                agents: r#"task.language in agent.languages"#.into(),
                timeout_secs: 30,
            },
            Target {
                agents: String::new(),
                timeout_secs: 0,
            },
        ],
    );
    b.agent("ann", json!({"languages": ["en"]}));
    let task = b.task("q", 0, None);
    assert_eq!(task.status, TaskStatus::Pending, "nobody speaks French");
    b.advance(29_999);
    assert!(b.offer("ann").is_none());
    b.advance(1);
    assert_eq!(b.offer("ann").unwrap().task, task.id, "anyone, after 30 s");
}

#[test]
fn news_for_a_contact_is_written_with_the_change_in_order() {
    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.agent("ann", json!({}));
    let task = b.task("q", 0, Some("c1"));
    assert!(b.news("c1").is_empty(), "an offer is not news for the flow");
    let r = b.offer("ann").unwrap();
    b.router.accept("ann", &r.id).unwrap();
    b.router
        .complete("ann", &task.id, Some("sold".into()), None)
        .unwrap();
    let news: Vec<News> = b.news("c1").into_iter().map(|o| o.news).collect();
    assert_eq!(
        news,
        [
            News::of(crate::contract::TaskStatus::Assigned),
            News::of(crate::contract::TaskStatus::Completed)
        ]
    );
    // A task whose contact already ended is withdrawn without news.
    let gone = b.task("q", 0, Some("c2"));
    b.router.withdraw(&gone.id, "the customer left").unwrap();
    assert!(b.news("c2").is_empty());
    // A timeout is news.
    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.task("q", 0, Some("c3"));
    b.advance(3_600_000);
    assert_eq!(
        b.news("c3")[0].news,
        News::of(crate::contract::TaskStatus::TimedOut)
    );
}

#[test]
fn a_restart_keeps_offers_statistics_and_the_idle_order() {
    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.agent("ann", json!({}));
    b.agent("bob", json!({}));
    b.agent("cat", json!({}));
    let first = b.task("q", 0, None);
    b.router
        .accept("ann", &first.reservation.clone().unwrap())
        .unwrap();
    b.advance(1_000);
    b.router.complete("ann", &first.id, None, None).unwrap();
    let second = b.task("q", 0, None);
    assert_eq!(second.agent.as_deref(), Some("bob"));
    b.router.cancel(&second.id, "abandoned").unwrap();
    b.advance(1);
    let third = b.task("q", 0, None);
    assert_eq!(third.agent.as_deref(), Some("cat"));
    b.advance(4_000);
    let stats = b.router.stats("q").unwrap();

    let b = b.restart();
    let after = b.router.stats("q").unwrap();
    assert_eq!(after.tasks["answered-in-window"], 1);
    assert_eq!(after.tasks["canceled-in-window"], 1);
    assert_eq!(after.sla_percent, stats.sla_percent);
    let offer = b.offer("cat").unwrap();
    assert_eq!(Some(offer.id.clone()), third.reservation);
    // Ten seconds to answer; four had passed before the restart.
    b.advance(5_999);
    assert!(b.offer("cat").is_some());
    b.advance(1);
    assert!(b.offer("cat").is_none(), "it timed out on time");
    // Ann finished before Bob's offer was withdrawn, so she is offered before him.
    assert_eq!(b.offer("ann").unwrap().task, third.id);
}

#[test]
fn an_offer_whose_time_ran_out_while_the_server_was_down_is_made_afresh_without_a_miss() {
    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.agent("ann", json!({}));
    let task = b.task("q", 0, None);
    let first = b.offer("ann").unwrap();
    // Down for longer than the ten seconds Ann had to answer.
    b.now.fetch_add(60_000, Ordering::SeqCst);
    let b = b.restart();
    let again = b.offer("ann").expect("offered again at once");
    assert_eq!(again.task, task.id);
    assert_ne!(again.id, first.id, "a new offer, with a full ten seconds");
    assert_eq!(b.router.agent("ann").unwrap()["missed_in_a_row"], 0);
}

/// A store whose commits fail while `down` is set: a database that went away.
struct Flaky {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
    reads_down: std::sync::atomic::AtomicBool,
}

impl Store for Flaky {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.reads_down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the database is away".into()));
        }
        self.inner.get(tree, key)
    }
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the database is away".into()));
        }
        self.inner.commit(batch)
    }
    fn scan(&self, tree: Tree, scan: &Scan<'_>) -> Result<Vec<crate::store::Pair>, StoreError> {
        if self.reads_down.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the database is away".into()));
        }
        self.inner.scan(tree, scan)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn next_id(&self) -> Result<u64, StoreError> {
        self.inner.next_id()
    }
}

#[test]
fn a_change_the_store_refused_is_not_kept_in_memory_either() {
    let flaky = Arc::new(Flaky {
        inner: MemoryStore::new(),
        down: false.into(),
        reads_down: false.into(),
    });
    let store: Arc<dyn Store> = flaky.clone();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let b = Bench {
        router: Bench::open(&store, &now),
        store,
        now,
    };
    b.queue("billing", "true", Vec::new());
    b.agent("ann", json!({}));
    let task = b.task("billing", 0, Some("c1"));
    let offer = b.offer("ann").unwrap();

    flaky.down.store(true, Ordering::SeqCst);
    let refused = b.router.accept("ann", &offer.id).unwrap_err();
    assert!(refused.to_string().contains("away"), "{refused}");
    // Memory agrees with the store: the offer still stands, the task is not assigned, and
    // nobody heard `assigned`.
    assert_eq!(
        b.router.task(&task.id).unwrap().status,
        TaskStatus::Reserved
    );
    assert_eq!(b.offer("ann").map(|r| r.id), Some(offer.id.clone()));
    assert!(b.news("c1").is_empty());

    // Away for reads too: the refused change cannot be undone by reading back, so the state
    // is read back before the next operation, once the store answers again.
    flaky.reads_down.store(true, Ordering::SeqCst);
    assert!(b.router.accept("ann", &offer.id).is_err());
    flaky.reads_down.store(false, Ordering::SeqCst);
    assert_eq!(
        b.router.task(&task.id).unwrap().status,
        TaskStatus::Reserved
    );
    assert_eq!(b.offer("ann").map(|r| r.id), Some(offer.id.clone()));

    // Back up: the same accept goes through, once.
    flaky.down.store(false, Ordering::SeqCst);
    let accepted = b.router.accept("ann", &offer.id).unwrap();
    assert_eq!(accepted.status, TaskStatus::Assigned);
    assert_eq!(b.news("c1").len(), 1);
}

/// A contact's last step, as the contact's session would be written: only if the session
/// stored is still `seen`.
fn last_step(contact: &str, seen: Option<&[u8]>, written: &[u8]) -> Batch {
    let mut step = Batch::new();
    step.expect(Tree::Sessions, contact, seen);
    step.put(Tree::Sessions, contact, written.to_vec());
    step
}

#[test]
fn a_contacts_last_step_and_its_tasks_end_land_in_one_commit_or_not_at_all() {
    let b = Bench::new();
    b.router
        .define_queue(QueueConfig {
            wrapup_secs: 60,
            ..QueueConfig::named("q")
        })
        .unwrap();
    let waiting = b.task("q", 0, Some("c1"));
    let session =
        |b: &Bench, contact: &str| b.store.get(Tree::Sessions, contact.as_bytes()).unwrap();
    let mut other = Batch::new();
    other.put(Tree::Sessions, "c1", b"step 2, on another node".to_vec());
    b.store.commit(&other).unwrap();

    // Another node stepped the contact since this one read it: neither the step nor the
    // task's end lands, and the task still waits, in memory and in the store.
    let refused = b
        .router
        .customer_left_with(
            &last_step("c1", None, b"ended"),
            &waiting.id,
            "c1",
            None,
            false,
        )
        .unwrap();
    assert!(
        matches!(&refused, Settled::Failed(StoreError::Conflict { tree, .. }) if *tree == Tree::Sessions.name()),
        "{refused:?}"
    );
    assert_eq!(
        session(&b, "c1").as_deref(),
        Some(&b"step 2, on another node"[..])
    );
    assert_eq!(
        b.router.task(&waiting.id).unwrap().status,
        TaskStatus::Pending
    );

    // Run again on what the other node left: both land, in one commit.
    let step = last_step("c1", Some(b"step 2, on another node"), b"ended");
    let together = b
        .router
        .customer_left_with(&step, &waiting.id, "c1", None, false)
        .unwrap();
    assert!(matches!(together, Settled::Together), "{together:?}");
    assert_eq!(session(&b, "c1").as_deref(), Some(&b"ended"[..]));
    assert_eq!(
        b.router.task(&waiting.id).unwrap().status,
        TaskStatus::Canceled
    );
    let b = b.restart();
    assert_eq!(
        b.router.task(&waiting.id).unwrap().status,
        TaskStatus::Canceled
    );
    assert_eq!(
        b.router
            .stats("q")
            .unwrap()
            .tasks
            .get("canceled-in-window")
            .copied(),
        Some(1)
    );

    // A conversation whose agent is already in wrap-up needs no change: the step is left to
    // its caller, not committed.
    b.agent("ann", json!({}));
    let talking = b.task("q", 0, Some("c2"));
    b.router.accept("ann", &b.offer("ann").unwrap().id).unwrap();
    b.router.wrap("ann", &talking.id).unwrap();
    let apart = b
        .router
        .customer_left_with(
            &last_step("c2", None, b"ended"),
            &talking.id,
            "c2",
            None,
            false,
        )
        .unwrap();
    assert!(matches!(apart, Settled::Apart), "{apart:?}");
    assert_eq!(session(&b, "c2"), None);
    assert_eq!(
        b.router.task(&talking.id).unwrap().status,
        TaskStatus::Wrapping
    );
}

#[test]
fn wrap_up_keeps_the_agent_busy_until_the_code_or_the_time_ends_it() {
    let b = Bench::new();
    b.router
        .define_queue(QueueConfig {
            wrapup_secs: 60,
            dispositions: vec!["sale".into(), "refund".into()],
            disposition_required: true,
            ..QueueConfig::named("sales")
        })
        .unwrap();
    b.agent("ann", json!({}));
    let first = b.task("sales", 0, Some("c1"));
    b.router.accept("ann", &b.offer("ann").unwrap().id).unwrap();
    let second = b.task("sales", 0, Some("c2"));

    // The conversation ends: the flow hears `completed` once, the agent is still busy.
    let wrapping = b.router.wrap("ann", &first.id).unwrap();
    assert_eq!(wrapping.status, TaskStatus::Wrapping);
    assert_eq!(
        wrapping.wrapup_until_ms,
        Some(b.now.load(Ordering::SeqCst) + 60_000)
    );
    let heard: Vec<News> = b.news("c1").into_iter().map(|o| o.news).collect();
    assert_eq!(
        heard.last(),
        Some(&News::of(crate::contract::TaskStatus::Completed))
    );
    b.advance(1_000);
    assert!(b.offer("ann").is_none(), "still wrapping up: no new offer");
    assert_eq!(
        b.router.task(&second.id).unwrap().status,
        TaskStatus::Pending
    );

    // The queue needs a code, one of its own.
    let missing = b.router.complete("ann", &first.id, None, None).unwrap_err();
    assert!(matches!(missing, RouterError::Invalid(_)), "{missing}");
    assert!(missing.to_string().contains("sale, refund"), "{missing}");
    let wrong = b
        .router
        .complete("ann", &first.id, None, Some("lunch".into()))
        .unwrap_err();
    assert!(wrong.to_string().contains("not a disposition"), "{wrong}");
    assert_eq!(
        b.router.task(&first.id).unwrap().status,
        TaskStatus::Wrapping
    );

    // A restart keeps the wrap-up and its end.
    let b = b.restart();
    assert!(b.offer("ann").is_none());
    let done = b
        .router
        .complete("ann", &first.id, Some("upsold".into()), Some("sale".into()))
        .unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.disposition.as_deref(), Some("sale"));
    assert_eq!(done.wrapup.as_deref(), Some("upsold"));
    assert_eq!(
        b.news("c1").len(),
        heard.len(),
        "completing after wrap-up is not news again"
    );
    // Free again: the waiting task is offered.
    assert_eq!(b.offer("ann").unwrap().task, second.id);
    b.router.accept("ann", &b.offer("ann").unwrap().id).unwrap();

    // The customer leaves: wrap-up begins without news (nobody is left to hear it), and
    // when the agent gives no code the time ends it.
    let ended = b
        .router
        .conversation_ended(&second.id, "the customer left", false)
        .unwrap();
    assert_eq!(ended.status, TaskStatus::Wrapping);
    assert_eq!(ended.wrapup.as_deref(), Some("the customer left"));
    assert_eq!(b.news("c2").len(), 1, "only `assigned`");
    b.advance(59_000);
    assert_eq!(
        b.router.task(&second.id).unwrap().status,
        TaskStatus::Wrapping
    );
    let third = b.task("sales", 0, None);
    b.advance(1_000);
    let done = b.router.task(&second.id).unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.reason.as_deref(), Some("wrap-up time ran out"));
    assert_eq!(b.offer("ann").unwrap().task, third.id, "freed by the clock");
}

#[test]
fn a_queue_without_wrap_up_completes_when_the_conversation_ends() {
    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.agent("ann", json!({}));
    let task = b.task("q", 0, Some("c1"));
    b.router.accept("ann", &b.offer("ann").unwrap().id).unwrap();
    let done = b
        .router
        .conversation_ended(&task.id, "the caller hung up", true)
        .unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.wrapup.as_deref(), Some("the caller hung up"));
    assert!(done.ended_ms.is_some());
    // Not abandoned: it was answered.
    let stats = b.router.stats("q").unwrap();
    assert_eq!(
        stats.tasks.get("canceled-in-window").copied().unwrap_or(0),
        0,
        "{stats:?}"
    );
    // Codes are checked when given, and a required code needs codes to choose from.
    let refused = b
        .router
        .define_queue(QueueConfig {
            disposition_required: true,
            ..QueueConfig::named("bad")
        })
        .unwrap_err();
    assert!(refused.to_string().contains("dispositions"), "{refused}");
    let refused = b
        .router
        .define_queue(QueueConfig {
            dispositions: vec!["sale".into(), "sale".into()],
            ..QueueConfig::named("bad")
        })
        .unwrap_err();
    assert!(refused.to_string().contains("named once"), "{refused}");
}

#[test]
fn an_agents_desk_hears_every_change_of_their_world() {
    let b = Bench::new();
    b.router
        .define_queue(QueueConfig {
            reservation_timeout_secs: 10,
            wrapup_secs: 30,
            ..QueueConfig::named("q")
        })
        .unwrap();
    b.queue("vip", r#""vip" in worker.skills"#, Vec::new());
    b.agent("ann", json!({"skills": []}));
    let mut heard = b.router.subscribe();
    let mut drain = || {
        let mut kinds = Vec::new();
        while let Ok(n) = heard.try_recv() {
            assert_eq!(n.agent, "ann");
            let json = serde_json::to_value(&n).unwrap();
            kinds.push(format!(
                "{}{}",
                json["type"].as_str().unwrap(),
                json["reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        kinds
    };

    // An offer, then withdrawn by a supervisor's move to a queue Ann is not in.
    let first = b.task("q", 0, None);
    b.router.move_task(&first.id, "vip", None).unwrap();
    assert_eq!(drain(), ["reservation", "rescinded (moved to queue vip)"]);
    // An offer left unanswered.
    b.task("q", 0, None);
    b.advance(10_000);
    let kinds = drain();
    assert_eq!(
        kinds[..2],
        [
            "reservation".to_string(),
            "timed-out (the offer was not answered in time)".to_string()
        ]
    );
    // A supervisor sends Ann on a break, and back.
    b.router.set_activity("ann", "break").unwrap();
    assert_eq!(drain(), ["activity"]);
    b.router.set_activity("ann", "available").unwrap();
    let kinds = drain();
    assert_eq!(kinds[0], "activity");
    // The waiting task is offered again (Ann passed it by: she is not offered it); a new one
    // is, accepted, and canceled by a supervisor.
    let held = b.task("q", 5, Some("c1"));
    let offer = b.offer("ann").unwrap();
    assert_eq!(offer.task, held.id);
    b.router.accept("ann", &offer.id).unwrap();
    b.router.cancel(&held.id, "duplicate").unwrap();
    let kinds = drain();
    assert!(
        kinds.ends_with(&["canceled (duplicate)".to_string()]),
        "{kinds:?}"
    );
    // A conversation that ends on its channel, and a wrap-up the clock ends.
    let talk = b.task("q", 5, Some("c2"));
    b.router.accept("ann", &b.offer("ann").unwrap().id).unwrap();
    b.router
        .conversation_ended(&talk.id, "the caller hung up", true)
        .unwrap();
    b.advance(30_000);
    let kinds = drain();
    assert!(
        kinds.ends_with(&[
            "wrapping (the caller hung up)".to_string(),
            "completed (wrap-up time ran out)".to_string()
        ]),
        "{kinds:?}"
    );
}

#[test]
fn a_callback_is_attempted_per_policy_never_twice_and_given_up_with_why() {
    let b = Bench::new();
    b.router
        .define_queue(QueueConfig {
            callback_attempts: 3,
            callback_retry_secs: 30,
            ..QueueConfig::named("q")
        })
        .unwrap();
    b.agent("ann", json!({}));
    // Nobody free while the caller asks for a callback.
    b.router.set_activity("ann", "break").unwrap();
    let task = b.task("q", 0, Some("c1"));
    b.router.keep_for_callback(&task.id, "+15550001").unwrap();
    assert!(
        b.router.callbacks_due().is_empty(),
        "not before an agent takes it"
    );
    b.router.set_activity("ann", "available").unwrap();
    let r = b.offer("ann").unwrap();
    b.router.accept("ann", &r.id).unwrap();
    assert_eq!(b.router.callbacks_due().len(), 1);

    let (_, n) = b
        .router
        .begin_callback_attempt(&task.id, "node-a")
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
    // Under way: not due, and a second node cannot take it.
    assert!(b.router.callbacks_due().is_empty());
    assert!(
        b.router
            .begin_callback_attempt(&task.id, "node-b")
            .unwrap()
            .is_none()
    );
    b.router
        .end_callback_attempt(
            &task.id,
            1,
            AttemptEnd::Missed("busy (486 Busy Here)".into()),
        )
        .unwrap();
    assert!(
        b.router.callbacks_due().is_empty(),
        "the retry interval first"
    );
    b.advance(30_000);
    let (_, n) = b
        .router
        .begin_callback_attempt(&task.id, "node-a")
        .unwrap()
        .unwrap();
    assert_eq!(n, 2);

    // The node stops during attempt 2: after the restart it is recorded as interrupted, not
    // dialed again; attempt 3 follows the interval.
    let b = b.restart();
    assert_eq!(b.router.interrupted_callbacks("node-b").unwrap(), 0);
    assert_eq!(b.router.interrupted_callbacks("node-a").unwrap(), 1);
    let t = b.router.task(&task.id).unwrap();
    let attempts = &t.callback.as_ref().unwrap().attempts;
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[1]
            .result
            .as_deref()
            .unwrap()
            .starts_with("interrupted")
    );
    assert!(b.router.callbacks_due().is_empty());
    b.advance(30_000);
    let (_, n) = b
        .router
        .begin_callback_attempt(&task.id, "node-a")
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);
    let given_up = b
        .router
        .end_callback_attempt(
            &task.id,
            3,
            AttemptEnd::Missed("no answer within 30 s".into()),
        )
        .unwrap();
    assert_eq!(given_up.status, TaskStatus::Canceled);
    let reason = given_up.reason.unwrap();
    assert!(
        reason.contains("after 3 attempts (last: no answer within 30 s)"),
        "{reason}"
    );
    // Ann is free for the next task.
    let next = b.task("q", 0, None);
    assert_eq!(next.agent.as_deref(), Some("ann"));

    // Answered: the customer was reached; no more attempts, the conversation goes on.
    let b2 = Bench::new();
    b2.queue("q", "", Vec::new());
    b2.agent("ann", json!({}));
    b2.router.set_activity("ann", "break").unwrap();
    let t = b2.task("q", 0, Some("c3"));
    b2.router.keep_for_callback(&t.id, "+15550003").unwrap();
    b2.router.set_activity("ann", "available").unwrap();
    let r = b2.offer("ann").unwrap();
    b2.router.accept("ann", &r.id).unwrap();
    b2.router
        .begin_callback_attempt(&t.id, "n")
        .unwrap()
        .unwrap();
    let answered = b2
        .router
        .end_callback_attempt(&t.id, 1, AttemptEnd::Answered)
        .unwrap();
    assert_eq!(answered.status, TaskStatus::Assigned);
    assert!(answered.callback.unwrap().reached());
    b2.advance(120_000);
    assert!(b2.router.callbacks_due().is_empty());
}

#[test]
fn an_agent_phone_that_fails_a_callback_costs_the_customer_no_attempt() {
    let b = Bench::new();
    b.router
        .define_queue(QueueConfig {
            callback_attempts: 1,
            ..QueueConfig::named("q")
        })
        .unwrap();
    b.agent("ann", json!({}));
    b.agent("bob", json!({}));
    b.router.set_activity("bob", "break").unwrap();
    let task = b.task("q", 0, Some("c1"));
    b.router.keep_for_callback(&task.id, "+15550001").unwrap();
    let r = b.offer("ann").unwrap();
    b.router.accept("ann", &r.id).unwrap();
    let (_, n) = b
        .router
        .begin_callback_attempt(&task.id, "node-a")
        .unwrap()
        .unwrap();
    let back = b
        .router
        .end_callback_attempt(
            &task.id,
            n,
            AttemptEnd::AgentMissed("the agent's phone did not answer: busy".into()),
        )
        .unwrap();
    // Back in the queue, the customer's one attempt untouched, Ann unavailable.
    assert_eq!(back.status, TaskStatus::Pending, "{back:?}");
    assert_eq!(back.agent, None);
    let callback = back.callback.clone().unwrap();
    assert_eq!(callback.customer_attempts(), 0);
    assert!(callback.attempts[0].agent_missed);
    assert_eq!(b.router.agent("ann").unwrap()["activity"], "unavailable");
    assert!(b.offer("ann").is_none());
    // Bob comes back and takes it: dialed at once, and it is the customer's first attempt.
    b.router.set_activity("bob", "available").unwrap();
    let r = b.offer("bob").unwrap();
    b.router.accept("bob", &r.id).unwrap();
    let (_, n) = b
        .router
        .begin_callback_attempt(&task.id, "node-a")
        .unwrap()
        .unwrap();
    assert_eq!(n, 2);
    let given_up = b
        .router
        .end_callback_attempt(&task.id, n, AttemptEnd::Missed("busy".into()))
        .unwrap();
    assert_eq!(given_up.status, TaskStatus::Canceled);
    assert!(
        given_up.reason.unwrap().contains("after 1 attempts"),
        "only the customer's attempts count"
    );
}

#[test]
fn a_transfer_to_a_named_agent_who_passes_goes_to_the_queue() {
    let b = Bench::new();
    b.queue("q", "", Vec::new());
    b.agent("ann", json!({}));
    b.agent("bob", json!({}));
    b.agent("cat", json!({}));
    let task = b.task("q", 0, Some("c1"));
    assert_eq!(task.agent.as_deref(), Some("ann"));
    let r = b.offer("ann").unwrap();
    b.router.accept("ann", &r.id).unwrap();
    // Cat has been idle longest of the others, but the transfer names bob.
    let moved = b
        .router
        .transfer("ann", &task.id, &TransferTo::Agent("bob".into()))
        .unwrap();
    assert_eq!(moved.agent.as_deref(), Some("bob"), "offered to bob only");
    let r = b.offer("bob").unwrap();
    b.router.reject("bob", &r.id).unwrap();
    let t = b.router.task(&task.id).unwrap();
    assert_eq!(t.only, None, "bob passed: the queue takes it");
    assert_eq!(t.agent.as_deref(), Some("cat"));
    // A second transfer while a number transfer is pending is refused.
    let r = b.offer("cat").unwrap();
    b.router.accept("cat", &r.id).unwrap();
    b.router
        .transfer("cat", &task.id, &TransferTo::Number("+15550009".into()))
        .unwrap();
    let again = b
        .router
        .transfer("cat", &task.id, &TransferTo::Queue("q".into()));
    assert!(matches!(again, Err(RouterError::Conflict(_))), "{again:?}");
}

/// The reporting scenario: 4 agents, 2 queues, 124 contacts whose every wait, talk time,
/// wrap-up and abandon the test scripts, and so knows.
mod reporting {
    use super::*;
    use crate::router::reports::{AgentRow, Interval, QueueRow, ReportQuery};
    use crate::store::SledStore;

    const AGENTS: [&str; 4] = ["ann", "bob", "cat", "dan"];
    const QUEUES: [&str; 2] = ["sales", "support"];
    /// 2026-06-01 08:00 UTC.
    const T0: u64 = 1_780_300_800_000;

    /// One scripted contact.
    #[derive(Debug, Clone)]
    struct Contact {
        queue: &'static str,
        agent: &'static str,
        arrives: u64,
        /// Waits this long, then is accepted (or hangs up, when `abandons`).
        wait: u64,
        abandons: bool,
        talk: u64,
        /// Of the talk time, this much on hold (starting a third of the way in).
        hold: u64,
        wrapup: u64,
    }

    impl Contact {
        fn accepted(&self) -> u64 {
            self.arrives + self.wait
        }
        fn talk_ends(&self) -> u64 {
            self.accepted() + self.talk
        }
        fn ends(&self) -> u64 {
            if self.abandons {
                self.accepted()
            } else {
                self.talk_ends() + self.wrapup
            }
        }
    }

    /// A step of the scenario, in time order.
    #[derive(Debug, Clone)]
    enum Step {
        Arrive(usize),
        Accept(usize),
        HangUp(usize),
        TalkEnds(usize),
        Complete(usize),
        Hold(usize, bool),
        Activity(&'static str, &'static str),
    }

    struct Script {
        contacts: Vec<Contact>,
        /// Every agent's activities as `(agent, at, activity)`, in order.
        activities: Vec<(&'static str, u64, &'static str)>,
        /// The last contact never gets an answer: still waiting at report time.
        end: u64,
    }

    /// A small generator the test owns (so the script is the same on every run).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn script() -> Script {
        let mut rng = Lcg(7);
        let mut contacts = Vec::new();
        let mut activities = Vec::new();
        for (a, agent) in AGENTS.iter().enumerate() {
            let mut t = T0 + a as u64 * 1_000;
            activities.push((*agent, t, "available"));
            for i in 0..31 {
                t += rng.below(240_000) + 1_000;
                // Bob takes a break between his 10th and 11th contacts.
                if *agent == "bob" && i == 10 {
                    activities.push((*agent, t, "break"));
                    t += 900_000;
                    activities.push((*agent, t, "available"));
                    t += 1_000;
                }
                let wait = rng.below(60_000) + 500;
                let abandons = rng.below(5) == 0;
                let c = Contact {
                    queue: QUEUES[(rng.below(3) == 0) as usize],
                    agent,
                    arrives: t,
                    wait,
                    abandons,
                    talk: rng.below(400_000) + 20_000,
                    hold: 0,
                    wrapup: rng.below(60_000),
                };
                let c = Contact {
                    hold: if rng.below(4) == 0 { c.talk / 3 } else { 0 },
                    ..c
                };
                t = c.ends() + 1;
                contacts.push(c);
            }
            t += 1_000;
            activities.push((*agent, t, "offline"));
        }
        let end = contacts.iter().map(Contact::ends).max().unwrap() + 60_000;
        // One more caller who is still waiting when the report is made.
        contacts.push(Contact {
            queue: "support",
            agent: "nobody",
            arrives: end - 30_000,
            wait: u64::MAX / 4,
            abandons: false,
            talk: 0,
            hold: 0,
            wrapup: 0,
        });
        Script {
            contacts,
            activities,
            end,
        }
    }

    fn open(dir: &std::path::Path, now: &Arc<AtomicU64>) -> Router {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
        let clock = now.clone();
        Router::with_clock(store, Box::new(move || clock.load(Ordering::SeqCst))).unwrap()
    }

    /// Runs the script against the router, step by step in time order.
    fn play(router: &Router, now: &AtomicU64, script: &Script) {
        for name in QUEUES {
            router
                .define_queue(QueueConfig {
                    sla_secs: 20,
                    reservation_timeout_secs: 600,
                    task_timeout_secs: 86_400,
                    wrapup_secs: 600,
                    targets: vec![Target {
                        agents: "agent.id == task.pick".into(),
                        timeout_secs: 0,
                    }],
                    ..QueueConfig::named(name)
                })
                .unwrap();
        }
        for agent in AGENTS {
            router
                .upsert_agent(
                    agent,
                    json!({"id": agent}),
                    BTreeMap::from([(Channel::Voice, 1)]),
                )
                .unwrap();
        }
        let mut steps: Vec<(u64, u8, Step)> = Vec::new();
        for (agent, at, activity) in &script.activities {
            steps.push((*at, 0, Step::Activity(agent, activity)));
        }
        for (i, c) in script.contacts.iter().enumerate() {
            steps.push((c.arrives, 1, Step::Arrive(i)));
            if c.agent == "nobody" {
                continue;
            }
            if c.abandons {
                steps.push((c.accepted(), 2, Step::HangUp(i)));
            } else {
                steps.push((c.accepted(), 2, Step::Accept(i)));
                if c.hold > 0 {
                    let on = c.accepted() + c.talk / 3;
                    steps.push((on, 5, Step::Hold(i, true)));
                    steps.push((on + c.hold, 5, Step::Hold(i, false)));
                }
                steps.push((c.talk_ends(), 3, Step::TalkEnds(i)));
                steps.push((c.ends(), 4, Step::Complete(i)));
            }
        }
        steps.sort_by_key(|(at, order, _)| (*at, *order));
        let mut ids = vec![String::new(); script.contacts.len()];
        for (at, _, step) in steps {
            now.store(at, Ordering::SeqCst);
            router.tick().unwrap();
            match step {
                Step::Activity(agent, activity) => {
                    router.set_activity(agent, activity).unwrap();
                }
                Step::Arrive(i) => {
                    let c = &script.contacts[i];
                    let task = router
                        .create_task(NewTask {
                            queue: c.queue.into(),
                            channel: Channel::Voice,
                            priority: 0,
                            attributes: json!({"pick": c.agent}),
                            timeout_secs: 0,
                            contact: None,
                        })
                        .unwrap();
                    if c.agent != "nobody" {
                        assert_eq!(task.agent.as_deref(), Some(c.agent), "offered at once");
                    }
                    ids[i] = task.id;
                }
                Step::Accept(i) => {
                    let agent = script.contacts[i].agent;
                    let offer = router.reservations_of(agent).pop().unwrap();
                    assert_eq!(offer.task, ids[i]);
                    router.accept(agent, &offer.id).unwrap();
                }
                Step::HangUp(i) => {
                    router.cancel(&ids[i], "the caller hung up").unwrap();
                }
                Step::TalkEnds(i) => {
                    let t = router
                        .conversation_ended(&ids[i], "hung up", false)
                        .unwrap();
                    assert_eq!(t.status, TaskStatus::Wrapping);
                }
                Step::Hold(i, on) => {
                    let agent = script.contacts[i].agent;
                    let t = router.hold(agent, &ids[i], on).unwrap();
                    assert_eq!(t.held_since_ms.is_some(), on);
                }
                Step::Complete(i) => {
                    let agent = script.contacts[i].agent;
                    router.complete(agent, &ids[i], None, None).unwrap();
                }
            }
        }
        now.store(script.end, Ordering::SeqCst);
    }

    /// The queue figures the test expects, from its own script.
    fn expected_queues(s: &Script, from: u64, step: u64, to: u64) -> Vec<QueueRow> {
        let mut rows = Vec::new();
        for queue in QUEUES {
            let mut start = from;
            while start < to {
                let end = start + step;
                let mine: Vec<&Contact> = s
                    .contacts
                    .iter()
                    .filter(|c| c.queue == queue && c.arrives >= start && c.arrives < end)
                    .collect();
                let waiting: Vec<&&Contact> = mine.iter().filter(|c| c.agent == "nobody").collect();
                let answered: Vec<&&Contact> = mine
                    .iter()
                    .filter(|c| !c.abandons && c.agent != "nobody")
                    .collect();
                let short = mine.iter().filter(|c| c.abandons && c.wait < 5_000).count() as u64;
                let abandoned: Vec<&&Contact> = mine
                    .iter()
                    .filter(|c| c.abandons && c.wait >= 5_000)
                    .collect();
                let n = answered.len() as u64;
                let in_sl = answered.iter().filter(|c| c.wait <= 20_000).count() as u64;
                let ab = abandoned.len() as u64;
                let offered = mine.len() as u64;
                let mean = |total: u64| (n > 0).then(|| total as f64 / 1000.0 / n as f64);
                let longest = answered
                    .iter()
                    .chain(abandoned.iter())
                    .map(|c| c.wait)
                    .chain(waiting.iter().map(|c| s.end - c.arrives))
                    .max()
                    .unwrap_or(0);
                rows.push(QueueRow {
                    queue: queue.into(),
                    interval_start: String::new(),
                    start_ms: start,
                    offered,
                    answered: n,
                    abandoned: ab,
                    short_abandoned: short,
                    waiting: waiting.len() as u64,
                    answered_in_sl: in_sl,
                    service_level_percent: (n + ab > 0)
                        .then(|| in_sl as f64 * 100.0 / (n + ab) as f64),
                    abandon_rate_percent: (offered - short > 0)
                        .then(|| ab as f64 * 100.0 / (offered - short) as f64),
                    asa_secs: mean(answered.iter().map(|c| c.wait).sum()),
                    longest_wait_secs: longest as f64 / 1000.0,
                    handled: n,
                    aht_secs: mean(answered.iter().map(|c| c.talk + c.wrapup).sum()),
                    talk_secs: mean(answered.iter().map(|c| c.talk - c.hold).sum()),
                    hold_secs: mean(answered.iter().map(|c| c.hold).sum()),
                    wrapup_secs: mean(answered.iter().map(|c| c.wrapup).sum()),
                });
                start = end;
            }
        }
        rows
    }

    /// Overlap of `[a, b)` with `[from, to)`.
    fn overlap(a: u64, b: u64, from: u64, to: u64) -> u64 {
        b.min(to).saturating_sub(a.max(from))
    }

    /// The agent figures the test expects, from its own script.
    fn expected_agents(s: &Script, from: u64, step: u64, to: u64) -> Vec<AgentRow> {
        let mut rows = Vec::new();
        for agent in AGENTS {
            let handled: Vec<&Contact> = s
                .contacts
                .iter()
                .filter(|c| c.agent == agent && !c.abandons)
                .collect();
            let mut spans = Vec::new();
            let mine: Vec<_> = s
                .activities
                .iter()
                .filter(|(a, _, _)| *a == agent)
                .collect();
            let mut since = 0;
            let mut current = "offline";
            for (_, at, activity) in &mine {
                spans.push((current, since, *at));
                (current, since) = (activity, *at);
            }
            spans.push((current, since, s.end));
            let mut start = from;
            while start < to {
                let end = start + step;
                let done: Vec<&&Contact> = handled
                    .iter()
                    .filter(|c| c.ends() >= start && c.ends() < end)
                    .collect();
                let busy: u64 = handled
                    .iter()
                    .map(|c| overlap(c.accepted(), c.ends(), start, end))
                    .sum();
                let mut states = BTreeMap::new();
                for (activity, a, b) in &spans {
                    let part = overlap(*a, *b, start, end.min(s.end));
                    if part > 0 {
                        *states.entry(activity.to_string()).or_insert(0.0) += part as f64 / 1000.0;
                    }
                }
                let available = spans
                    .iter()
                    .filter(|(a, _, _)| *a == "available")
                    .map(|(_, a, b)| overlap(*a, *b, start, end))
                    .sum::<u64>();
                let n = done.len() as u64;
                rows.push(AgentRow {
                    agent: agent.into(),
                    interval_start: String::new(),
                    start_ms: start,
                    handled: n,
                    aht_secs: (n > 0).then(|| {
                        done.iter().map(|c| c.talk + c.wrapup).sum::<u64>() as f64
                            / 1000.0
                            / n as f64
                    }),
                    busy_secs: busy as f64 / 1000.0,
                    occupancy_percent: (available > 0)
                        .then(|| busy as f64 * 100.0 / available as f64),
                    states,
                });
                start = end;
            }
        }
        rows
    }

    fn close(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-6,
            (None, None) => true,
            _ => false,
        }
    }

    fn check(router: &Router, s: &Script, when: &str) {
        for (interval, step) in [(Interval::Quarter, 900_000), (Interval::Hour, 3_600_000)] {
            let from = T0 - T0 % step;
            let to = s.end;
            let query = ReportQuery {
                from_ms: T0,
                to_ms: to,
                interval,
                zone: chrono_tz::UTC,
                short_abandon_secs: None,
                only: None,
            };
            let got = router.queue_report(&query).unwrap();
            let want = expected_queues(s, from, step, to);
            assert_eq!(got.len(), want.len(), "{when}: queue rows");
            for (g, w) in got.iter().zip(&want) {
                let same = g.queue == w.queue
                    && g.start_ms == w.start_ms
                    && (
                        g.offered,
                        g.answered,
                        g.abandoned,
                        g.short_abandoned,
                        g.waiting,
                    ) == (
                        w.offered,
                        w.answered,
                        w.abandoned,
                        w.short_abandoned,
                        w.waiting,
                    )
                    && (g.answered_in_sl, g.handled) == (w.answered_in_sl, w.handled)
                    && close(g.service_level_percent, w.service_level_percent)
                    && close(g.abandon_rate_percent, w.abandon_rate_percent)
                    && close(g.asa_secs, w.asa_secs)
                    && close(Some(g.longest_wait_secs), Some(w.longest_wait_secs))
                    && close(g.aht_secs, w.aht_secs)
                    && close(g.talk_secs, w.talk_secs)
                    && close(g.hold_secs, w.hold_secs)
                    && close(g.wrapup_secs, w.wrapup_secs);
                assert!(same, "{when}, {interval:?}: got\n{g:?}\nwant\n{w:?}");
            }
            let got = router.agent_report(&query).unwrap();
            let want = expected_agents(s, from, step, to);
            assert_eq!(got.len(), want.len(), "{when}: agent rows");
            for (g, w) in got.iter().zip(&want) {
                let same = g.agent == w.agent
                    && g.start_ms == w.start_ms
                    && g.handled == w.handled
                    && close(g.aht_secs, w.aht_secs)
                    && close(Some(g.busy_secs), Some(w.busy_secs))
                    && close(g.occupancy_percent, w.occupancy_percent)
                    && g.states.len() == w.states.len()
                    && g.states
                        .iter()
                        .all(|(k, v)| close(Some(*v), w.states.get(k).copied()));
                assert!(same, "{when}, {interval:?}: got\n{g:?}\nwant\n{w:?}");
            }
        }
    }

    #[test]
    fn every_reported_figure_equals_what_the_script_says_before_and_after_a_restart() {
        let s = script();
        assert!(s.contacts.len() >= 100);
        assert!(
            s.contacts.iter().any(|c| c.abandons && c.wait < 5_000),
            "a short abandon"
        );
        assert!(
            s.contacts
                .iter()
                .filter(|c| c.abandons && c.wait >= 5_000)
                .count()
                > 5
        );
        assert!(
            s.contacts
                .iter()
                .filter(|c| !c.abandons && c.hold > 0)
                .count()
                > 5
        );
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(T0));
        let router = open(dir.path(), &now);
        play(&router, &now, &s);
        check(&router, &s, "before the restart");
        router.flush().unwrap();
        drop(router);
        let router = open(dir.path(), &now);
        check(&router, &s, "after the restart");
    }
}

/// Two nodes' routers on one store. A customer who leaves while waiting (nobody was offered
/// their task) is let go on one node without moving the router's change counter, so such
/// cancellations on several nodes never take turns on it; the other node, which still holds
/// the task as waiting, cannot offer it to an agent who comes free: its offer is refused, it
/// reads the router back, and the task stays canceled.
#[test]
fn a_customer_who_left_on_one_node_is_never_offered_on_another() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let now = Arc::new(AtomicU64::new(1_000_000));
    let node = |now: &Arc<AtomicU64>| {
        let clock = now.clone();
        Router::build(
            store.clone(),
            Box::new(move || clock.load(Ordering::SeqCst)),
            true,
        )
        .unwrap()
    };
    let a = node(&now);
    a.define_queue(QueueConfig {
        reservation_timeout_secs: 10,
        ..QueueConfig::named("q")
    })
    .unwrap();
    a.upsert_agent("alice", json!({}), BTreeMap::from([(Channel::Voice, 1)]))
        .unwrap();
    // A customer's task on node a, timing out after 30 s.
    let wait = |contact: &str| {
        a.create_task(NewTask {
            queue: "q".into(),
            channel: Channel::Voice,
            priority: 0,
            attributes: json!({}),
            timeout_secs: 30,
            contact: Some(contact.into()),
        })
        .unwrap()
    };
    let left = wait("c1");
    let b = node(&now);
    assert_eq!(b.task(&left.id).unwrap().status, TaskStatus::Pending);
    let counter = || {
        persistence::stored_version(
            store
                .get(Tree::Meta, keys::ROUTER_VERSION.as_bytes())
                .unwrap()
                .as_deref(),
        )
    };
    let before = counter();

    a.withdraw(&left.id, "the customer left").unwrap();
    assert_eq!(
        counter(),
        before,
        "a waiting task's end is not a router change"
    );
    let stored = |id: &str| store.get_json::<Task>(Tree::Tasks, id).unwrap().unwrap();
    assert_eq!(stored(&left.id).status, TaskStatus::Canceled);

    // Alice comes free on b, which still holds the task as waiting.
    now.fetch_add(1, Ordering::SeqCst);
    b.set_activity("alice", "available").unwrap();
    b.tick().unwrap();
    assert_eq!(
        stored(&left.id).status,
        TaskStatus::Canceled,
        "the canceled task was written back to life"
    );
    assert!(b.reservations_of("alice").is_empty());
    assert!(b.task(&left.id).unwrap().status.is_final());

    // Nor does a node's clock time such a task out (a second end, with news for a contact
    // who is gone).
    a.set_activity("alice", "break").unwrap();
    let waiting = wait("c3");
    let c = node(&now);
    assert_eq!(c.task(&waiting.id).unwrap().status, TaskStatus::Pending);
    a.withdraw(&waiting.id, "the customer left").unwrap();
    now.fetch_add(31_000, Ordering::SeqCst);
    c.tick().unwrap();
    assert_eq!(stored(&waiting.id).status, TaskStatus::Canceled);
    let told: Vec<Outcome> = store
        .scan_json(Tree::Inbox, &keys::of_contact("c3"))
        .unwrap();
    assert!(told.is_empty(), "a contact who left was told: {told:?}");
    a.set_activity("alice", "available").unwrap();

    // The next customer is offered to her at once, by either node.
    let next = wait("c2");
    b.tick().unwrap();
    let offered = b.reservations_of("alice");
    assert_eq!(offered.len(), 1, "{offered:?}");
    assert_eq!(offered[0].task, next.id);
}

#[test]
fn a_contacts_end_refused_on_a_shared_store_counts_no_cancel() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock = now.clone();
    let router = Router::build(
        store.clone(),
        Box::new(move || clock.load(Ordering::SeqCst)),
        true,
    )
    .unwrap();
    router.define_queue(QueueConfig::named("q")).unwrap();
    let task = router
        .create_task(NewTask {
            queue: "q".into(),
            channel: Channel::Voice,
            priority: 0,
            attributes: json!({}),
            timeout_secs: 0,
            contact: Some("c1".into()),
        })
        .unwrap();
    let mut other = Batch::new();
    other.put(Tree::Sessions, "c1", b"step 2, on another node".to_vec());
    store.commit(&other).unwrap();
    let canceled = |router: &Router| {
        router
            .stats("q")
            .unwrap()
            .tasks
            .get("canceled-in-window")
            .copied()
            .unwrap_or(0)
    };

    // Refused by the step's own check: the queue's figures count no cancel.
    let refused = router
        .customer_left_with(
            &last_step("c1", None, b"ended"),
            &task.id,
            "c1",
            None,
            false,
        )
        .unwrap();
    assert!(matches!(refused, Settled::Failed(_)), "{refused:?}");
    // As the next change on this node would, it catches up first.
    router.refresh().unwrap();
    assert_eq!(canceled(&router), 0);
    assert_eq!(router.task(&task.id).unwrap().status, TaskStatus::Pending);

    // The step run again on what the other node left: counted once.
    let step = last_step("c1", Some(b"step 2, on another node"), b"ended");
    let together = router
        .customer_left_with(&step, &task.id, "c1", None, false)
        .unwrap();
    assert!(matches!(together, Settled::Together), "{together:?}");
    assert_eq!(canceled(&router), 1);

    // Its end is heard again (a retry): the task is finished in the store, so the router
    // says so without reading everything, and nothing is committed.
    let again = router
        .customer_left_with(
            &last_step("c1", Some(b"ended"), b"ended again"),
            &task.id,
            "c1",
            None,
            false,
        )
        .unwrap_err();
    assert!(matches!(again, RouterError::UnknownTask(_)), "{again}");
    assert_eq!(
        store.get(Tree::Sessions, b"c1").unwrap().as_deref(),
        Some(&b"ended"[..])
    );
}

/// A task's open-task entry is written ahead of the task: a read of the router between the
/// two finds the entry alone. Its repair drops the entry only if the task is still not there
/// when the repair lands, so a task whose commit was under way is not lost to the next
/// restart; an entry whose task never came is dropped.
#[test]
fn an_open_task_entry_read_before_its_task_lands_is_kept() {
    let b = Bench::new();
    b.queue("q", "true", vec![]);
    let task = b.task("q", 0, None);
    let id = task.id.as_bytes();
    let stored = b.store.get(Tree::Tasks, id).unwrap().unwrap();
    b.store.delete(Tree::Tasks, id).unwrap();
    let (_, repairs) = b.router.read_state().unwrap();
    // The task's commit lands before the repair.
    b.store.put(Tree::Tasks, id, &stored).unwrap();
    assert!(matches!(
        b.store.commit(&repairs),
        Err(StoreError::Conflict { .. })
    ));
    assert!(b.store.get(Tree::OpenTasks, id).unwrap().is_some());
    let b = b.restart();
    assert_eq!(b.router.task(&task.id).unwrap().status, TaskStatus::Pending);

    // An entry whose task never came is dropped.
    b.store.put(Tree::OpenTasks, b"tk_never", b"").unwrap();
    let (_, repairs) = b.router.read_state().unwrap();
    b.store.commit(&repairs).unwrap();
    assert_eq!(b.store.get(Tree::OpenTasks, b"tk_never").unwrap(), None);
}
