//! Several replicas on one PostgreSQL database (issue 14): the two backends' schemas, shared
//! state seen by every replica, and a HostFactory burst over three `ohfp serve` processes with
//! the leader SIGKILLed mid-burst, then another replica killed and started again. Runs on
//! PostgreSQL in both builds of the suite.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::Child;

use crate::helpers::{PATIENCE, eventually, get, put, serve};
use crate::hostfactory::hf_config;
use crate::reliability::hf_call;
use crate::support::postgres::{fresh_database_url, psql};

/// How long a new leader may take before the test fails: generous for a loaded machine; the
/// figure the README gives is what the test prints.
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(60);

/// The schema both backends' migrations make: columns with their kind and nullability, the
/// primary keys, the index names, the migration versions.
#[derive(Debug, PartialEq)]
struct Schema {
    columns: BTreeSet<(String, String, String, bool)>,
    primary_keys: BTreeSet<(String, String)>,
    indexes: BTreeSet<String>,
    migrations: Vec<i64>,
}

/// SQLite's declared types and PostgreSQL's types, as one word.
fn kind(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" => "integer",
        "text" => "text",
        "real" | "double precision" => "real",
        other => return format!("unexpected type {other}"),
    }
    .to_string()
}

fn lines(out: &str) -> impl Iterator<Item = Vec<String>> + '_ {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
}

async fn sqlite_schema(path: &Path) -> Schema {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.pk FROM sqlite_master m
         JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name != '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let migrations: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    Schema {
        // A primary key column is never null, whatever SQLite's `notnull` says of it.
        columns: rows
            .iter()
            .map(|(t, c, ty, notnull, pk)| {
                (t.clone(), c.clone(), kind(ty), *notnull == 1 || *pk > 0)
            })
            .collect(),
        primary_keys: rows
            .iter()
            .filter(|r| r.4 > 0)
            .map(|(t, c, ..)| (t.clone(), c.clone()))
            .collect(),
        indexes: indexes.into_iter().collect(),
        migrations,
    }
}

fn postgres_schema(url: &str) -> Schema {
    let columns = psql(
        url,
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name != '_sqlx_migrations'",
    );
    let keys = psql(
        url,
        "SELECT k.table_name, k.column_name FROM information_schema.table_constraints c
         JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name
         WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = 'public'
           AND c.table_name != '_sqlx_migrations'",
    );
    let indexes = psql(
        url,
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey'",
    );
    let migrations = psql(url, "SELECT version FROM _sqlx_migrations ORDER BY version");
    Schema {
        columns: lines(&columns)
            .map(|l| (l[0].clone(), l[1].clone(), kind(&l[2]), l[3] == "NO"))
            .collect(),
        primary_keys: lines(&keys).map(|l| (l[0].clone(), l[1].clone())).collect(),
        indexes: indexes.lines().map(str::to_string).collect(),
        migrations: migrations.lines().map(|v| v.parse().unwrap()).collect(),
    }
}

#[tokio::test]
async fn both_backends_migrate_to_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ohfp.db");
    let mut cfg = crate::helpers::test_config(&file);
    cfg.database.url = None;
    cfg.database.open().await.unwrap().close().await;
    cfg.database.url = Some(fresh_database_url());
    cfg.database.open().await.unwrap().close().await;
    let (lite, pg) = (
        sqlite_schema(&file).await,
        postgres_schema(cfg.database.url.as_deref().unwrap()),
    );
    assert!(lite.columns.len() > 80, "{lite:?}");
    assert_eq!(lite.migrations, pg.migrations);
    let only = |a: &BTreeSet<_>, b: &BTreeSet<_>| a.difference(b).cloned().collect::<Vec<_>>();
    assert_eq!(
        (
            only(&lite.columns, &pg.columns),
            only(&pg.columns, &lite.columns)
        ),
        (vec![], vec![]),
        "columns only in SQLite, only in PostgreSQL"
    );
    assert_eq!(lite.primary_keys, pg.primary_keys);
    assert_eq!(lite.indexes, pg.indexes);
}

/// One `ohfp serve` replica.
struct Replica {
    child: Child,
    base: String,
}

/// Writes the replicas' shared configuration (simulated strategies, the fixture templates, a
/// fast reconciler) on the PostgreSQL database `url`.
fn write_config(dir: &Path, url: &str) -> PathBuf {
    let mut cfg = hf_config(dir, 0.3);
    cfg.database.url = Some(url.to_string());
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    path
}

async fn start(config: &Path, dir: &Path, n: usize) -> Replica {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("replica-{n}.log")))
        .unwrap();
    let (child, base) = serve(config, &[], log.into()).await;
    Replica { child, base }
}

/// Replicas of `ohfp serve` on one fresh PostgreSQL database, with their shared configuration
/// and their logs in `dir`.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
    config: PathBuf,
    replicas: Vec<Replica>,
}

impl Cluster {
    async fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database_url();
        let config = write_config(dir.path(), &url);
        let mut replicas = Vec::new();
        for i in 0..n {
            replicas.push(start(&config, dir.path(), i).await);
        }
        Self {
            dir,
            url,
            config,
            replicas,
        }
    }
}

async fn replica_status(base: &str) -> Option<Value> {
    let r = reqwest::get(format!("{base}/api/v1/status")).await.ok()?;
    let v: Value = r.json().await.ok()?;
    Some(v["replica"].clone())
}

/// Waits until exactly one of `bases` leads; its index, and how long it took.
async fn leader_among(bases: &[&str]) -> (usize, Duration) {
    let started = Instant::now();
    loop {
        let mut leaders = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            if replica_status(base)
                .await
                .is_some_and(|r| r["leader"] == true)
            {
                leaders.push(i);
            }
        }
        if let [one] = leaders[..] {
            return (one, started.elapsed());
        }
        assert!(
            leaders.len() < 2,
            "two replicas lead at once: {leaders:?} of {bases:?}"
        );
        assert!(
            started.elapsed() < TAKEOVER_DEADLINE,
            "no replica leads after {TAKEOVER_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn kill(replica: &mut Replica) {
    replica.child.start_kill().expect("SIGKILL");
    replica.child.wait().await.unwrap();
}

/// The operations of `strategy` that `base` counts over the last hour.
async fn operations_of(base: &str, strategy: &str) -> u64 {
    let v = get(
        base,
        &format!("/api/v1/providers/{strategy}/metrics?time_range_hours=1"),
    )
    .await;
    v["totals"]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("{v}"))
}

/// A change made on one replica, seen on the others: registrations, the breaker, settings,
/// alert rules; and the metrics of all, added up.
async fn shared_state_is_seen_everywhere(replicas: &[Replica]) {
    let [a, b, c] = [&replicas[0].base, &replicas[1].base, &replicas[2].base];
    let started = Instant::now();
    let registered = crate::helpers::post(
        a,
        "/api/v1/providers",
        json!({"strategy_name": "sim-extra", "provider_type": "simulated",
               "strategy_config": {"latency_ms": 0}}),
    )
    .await;
    assert_eq!(registered["strategy_name"], "sim-extra", "{registered}");
    for base in [b, c] {
        eventually(
            "a registration made on another replica is served",
            || async move {
                let v = crate::helpers::post(
                    base,
                    "/api/v1/providers/operations",
                    json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-extra"}),
                )
                .await;
                (v["metadata"]["strategy_used"] == "sim-extra").then_some(())
            },
        )
        .await;
    }
    let registration = started.elapsed();
    let started = Instant::now();
    put(
        b,
        "/api/v1/providers/sim-extra/circuit",
        json!({"mode": "open", "source": "replica-test", "reason": "shared"}),
    )
    .await;
    put(
        c,
        "/api/v1/providers/configuration",
        json!({"default_selection_policy": "round_robin"}),
    )
    .await;
    for base in [a, c] {
        eventually("a breaker forced on another replica", || async move {
            let v = get(base, "/api/v1/providers/sim-extra/health").await;
            (v["circuit"]["mode"] == "forced_open").then_some(())
        })
        .await;
    }
    for base in [a, b] {
        eventually("settings changed on another replica", || async move {
            let v = get(base, "/api/v1/providers/configuration").await;
            (v["default_selection_policy"] == "ROUND_ROBIN").then_some(())
        })
        .await;
    }
    put(
        a,
        "/api/v1/alerts/rules",
        json!({"rules": [{"name": "slow", "condition": {"type": "response_time_above",
            "statistic": "mean", "ms": 100, "window_seconds": 120, "min_samples": 5}}]}),
    )
    .await;
    for base in [b, c] {
        eventually("alert rules set on another replica", || async move {
            let v = get(base, "/api/v1/alerts/rules").await;
            (v["source"] == "api" && v["rules"][0]["name"] == "slow").then_some(())
        })
        .await;
    }
    eprintln!(
        "seen on every replica: a registration after {registration:?}, a breaker and settings after {:?}",
        started.elapsed()
    );
    // Metrics are merged: calls made on each replica add up in every replica's answer.
    let before = operations_of(a, "sim-primary").await;
    for base in [a, b, c] {
        for _ in 0..2 {
            crate::helpers::post(
                base,
                "/api/v1/providers/operations",
                json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"}),
            )
            .await;
        }
    }
    for base in [a, b, c] {
        eventually("the six calls counted on every replica", || async move {
            (operations_of(base, "sim-primary").await >= before + 6).then_some(())
        })
        .await;
    }
    // Back to what the burst below expects: sim-extra gone, the policy as configured.
    let r = reqwest::Client::new()
        .delete(format!("{a}/api/v1/providers/sim-extra"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    put(
        a,
        "/api/v1/providers/configuration",
        json!({"default_selection_policy": null}),
    )
    .await;
    for base in [b, c] {
        eventually("a strategy removed on another replica", || async move {
            let v = get(base, "/api/v1/providers").await;
            let names = crate::helpers::strategy_names(&v);
            (!names.iter().any(|n| n == "sim-extra")).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn three_replicas_survive_losing_their_leader_mid_burst() {
    const ACQUIRES: usize = 45;
    let Cluster {
        dir,
        url,
        config,
        mut replicas,
    } = Cluster::start(3).await;
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let (leader, elected) =
        leader_among(&bases.iter().map(String::as_str).collect::<Vec<_>>()).await;
    eprintln!("replica {leader} leads, {elected:?} after the last start");

    shared_state_is_seen_everywhere(&replicas).await;

    // A burst spread over the three; the leader is SIGKILLed after a third has been answered.
    let client = reqwest::Client::new();
    let counts: Vec<u64> = (0..ACQUIRES as u64).map(|i| 1 + i % 3).collect();
    let calls: Vec<_> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (client, base) = (client.clone(), bases[i % 3].clone());
            let body = json!({"template": {"templateId": "Unlimited-OnDemand", "machineCount": n}});
            tokio::spawn(async move {
                // Spread over time too, so that the kill lands mid-burst.
                tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
                hf_call(&client, &base, "requestMachines", body).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(40 * (ACQUIRES as u64) / 3)).await;
    kill(&mut replicas[leader]).await;
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (next, _) = leader_among(
        &survivors
            .iter()
            .map(|i| bases[*i].as_str())
            .collect::<Vec<_>>(),
    )
    .await;
    let takeover = killed_at.elapsed();
    let next = survivors[next];
    eprintln!("replica {next} took over {takeover:?} after the leader was killed");

    let mut answered: Vec<(String, u64)> = Vec::new();
    for (call, n) in calls.into_iter().zip(&counts) {
        if let Some(v) = call.await.unwrap() {
            answered.push((v["requestId"].as_str().unwrap().to_string(), *n));
        }
    }
    assert!(
        answered.len() >= ACQUIRES / 2 && answered.len() < ACQUIRES,
        "{} of {ACQUIRES} answered: the kill was not mid-burst",
        answered.len()
    );

    // Then the new leader is killed too, and started again.
    kill(&mut replicas[next]).await;
    let killed_at = Instant::now();
    let last = survivors.iter().copied().find(|i| *i != next).unwrap();
    leader_among(&[bases[last].as_str()]).await;
    let second_takeover = killed_at.elapsed();
    replicas[next] = start(&config, dir.path(), next).await;
    eprintln!("second takeover {second_takeover:?}; replica {next} started again");

    // Every answered request completes with its machines, read through any live replica.
    let live = [replicas[last].base.clone(), replicas[next].base.clone()];
    let ids: Vec<String> = answered.iter().map(|(id, _)| id.clone()).collect();
    let deadline = Instant::now() + 4 * PATIENCE;
    let done: HashMap<String, Value> = loop {
        let mut all = HashMap::new();
        for (k, chunk) in ids.chunks(15).enumerate() {
            let body = json!({"requests": chunk.iter().map(|id| json!({"requestId": id})).collect::<Vec<_>>()});
            let v = hf_call(&client, &live[k % 2], "getRequestStatus", body)
                .await
                .expect("getRequestStatus answers");
            for r in v["requests"].as_array().unwrap() {
                all.insert(r["requestId"].as_str().unwrap().to_string(), r.clone());
            }
        }
        if all.values().all(|r| r["status"] != "running") {
            break all;
        }
        assert!(Instant::now() < deadline, "still running: {all:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut machines = BTreeSet::new();
    for (id, n) in &answered {
        let r = &done[id];
        assert_eq!(r["status"], "complete", "{r}");
        let ms = r["machines"].as_array().unwrap();
        assert_eq!(ms.len() as u64, *n, "{r}");
        for m in ms {
            assert_eq!(m["status"], "running", "{r}");
            assert!(
                machines.insert(m["machineId"].as_str().unwrap().to_string()),
                "{m} is in two requests"
            );
        }
    }
    // None provisioned twice: each request's simulated instances are exactly its machines;
    // none untracked: every simulated instance belongs to a stored machine.
    let made = psql(
        &url,
        "SELECT request_id, COUNT(*) FROM sim_instances GROUP BY request_id",
    );
    let made: BTreeMap<String, u64> = made
        .lines()
        .map(|l| {
            let (id, n) = l.split_once('|').unwrap();
            (id.to_string(), n.parse().unwrap())
        })
        .collect();
    for (id, n) in &answered {
        assert_eq!(made.get(id), Some(n), "instances made for {id}");
    }
    let untracked = psql(
        &url,
        "SELECT instance_id FROM sim_instances WHERE instance_id NOT IN (SELECT machine_id FROM hf_machines)",
    );
    assert_eq!(untracked, "", "simulated instances no request tracks");
    eprintln!(
        "{} of {ACQUIRES} answered, {} machines; takeovers {takeover:?} and {second_takeover:?}",
        answered.len(),
        machines.len()
    );
    for r in &mut replicas {
        let _ = r.child.start_kill();
    }
}

/// A leader whose lock session is ended from the server (as a network cut would end it) stops
/// leading and says so; one replica leads again.
#[tokio::test]
async fn a_leader_whose_session_ends_steps_down_and_one_replica_leads_again() {
    // The dir holds the replicas' configuration, templates and logs: kept to the end.
    let Cluster {
        dir: _dir,
        url,
        mut replicas,
        ..
    } = Cluster::start(2).await;
    let bases: Vec<&str> = replicas.iter().map(|r| r.base.as_str()).collect();
    let (first, _) = leader_among(&bases).await;
    let database = url.rsplit('/').next().unwrap();
    psql(
        &url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'ohfp leader lock' AND datname = '{database}'"
        ),
    );
    let old = bases[first];
    eventually("the old leader says it stopped leading", || async move {
        let v = get(old, "/api/v1/events?kind=leadership_changed&limit=20").await;
        let events = v["events"].as_array().unwrap_or_else(|| panic!("{v}"));
        events
            .iter()
            .any(|e| e["detail"]["leader"] == false)
            .then_some(())
    })
    .await;
    leader_among(&bases).await;
    for r in &mut replicas {
        kill(r).await;
    }
}
