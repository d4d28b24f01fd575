//! `booking-harness export chaos-mesh`: a scenario's faults as Chaos Mesh
//! resources, and its workload as a Kubernetes Job, for a cluster deployed
//! from `k8s/`.
//!
//! The harness injects faults through its own proxies and process control;
//! on a cluster the engine that clusters already use does it. Each fault
//! becomes one node of a Chaos Mesh `Workflow` (a parallel branch per
//! fault: wait until its `at`, then the chaos for its `for`). The Job runs
//! the same workload in target mode with `--faults-outside`, so the checkers
//! judge what the cluster did. A fault with no Chaos Mesh equivalent is
//! listed with the nearest substitute, which is exported when there is one.
//!
//! Selectors name the labels of the manifests in `k8s/` (see [`Labels`]);
//! a test holds the two together.

use std::time::Duration;

use serde_json::{json, Value};

use crate::scenario::{Fault, FaultKind, Scenario, Target};

/// Pod labels of the deployment in `k8s/base`.
pub struct Labels;

impl Labels {
    pub const SERVICE: (&'static str, &'static str) = ("app.kubernetes.io/name", "booking");
    pub const REDIS: (&'static str, &'static str) = ("app.kubernetes.io/name", "redis");
    pub const DATABASE: (&'static str, &'static str) = ("app.kubernetes.io/name", "postgres");
    /// The Job's pods: the "clients" side of a replica's link.
    pub const CLIENT: (&'static str, &'static str) =
        ("app.kubernetes.io/component", "chaos-client");
    pub const PART_OF: (&'static str, &'static str) = ("app.kubernetes.io/part-of", "booking");
}

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub namespace: String,
    /// The image with `booking-harness` (the project's image).
    pub image: String,
    /// The service's in-cluster URL.
    pub service_url: String,
    /// Secret and key holding a DATABASE_URL for the store checkers.
    pub database_secret: Option<(String, String)>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            namespace: "booking".into(),
            image: "booking:latest".into(),
            service_url: "http://booking.booking.svc.cluster.local".into(),
            database_secret: Some(("booking-secrets".into(), "DATABASE_URL".into())),
        }
    }
}

/// How one fault fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Translation {
    /// Exported with the same effect.
    Same,
    /// Exported as the nearest substitute, which differs as said.
    Substitute(String),
    /// Not exported, and why.
    Missing(String),
}

#[derive(Debug, Clone)]
pub struct FaultExport {
    pub index: usize,
    pub kind: &'static str,
    pub translation: Translation,
}

/// The exported documents.
#[derive(Debug, Clone)]
pub struct Export {
    /// The Chaos Mesh Workflow; `None` when no fault could be exported.
    pub workflow: Option<Value>,
    /// The ConfigMap with the scenario file and the Job that runs it.
    pub job: Vec<Value>,
    pub faults: Vec<FaultExport>,
}

/// Chaos Mesh's API group.
const CHAOS_API: &str = "chaos-mesh.org/v1alpha1";

pub fn export(scenario: &Scenario, scenario_toml: &str, opts: &ExportOptions) -> Export {
    let name = resource_name(&scenario.name);
    let mut templates = Vec::new();
    let mut branches = Vec::new();
    let mut faults = Vec::new();
    for (index, fault) in scenario.faults.iter().enumerate() {
        let (chaos, translation) = translate(fault, opts);
        faults.push(FaultExport {
            index,
            kind: fault.kind.name(),
            translation: translation.clone(),
        });
        let Some((template_type, field, spec)) = chaos else {
            continue;
        };
        let branch = format!("fault-{index}");
        let wait = format!("{branch}-wait");
        let act = format!("{branch}-{}", fault.kind.name().replace('_', "-"));
        templates
            .push(json!({ "name": branch, "templateType": "Serial", "children": [wait, act] }));
        templates.push(json!({
            "name": wait, "templateType": "Suspend",
            // Chaos Mesh wants a positive deadline.
            "deadline": go_duration(fault.at.max(Duration::from_millis(1))),
        }));
        let mut node = json!({
            "name": act, "templateType": template_type,
            "deadline": go_duration(lasts(fault)),
        });
        node[field] = spec;
        templates.push(node);
        branches.push(branch);
    }
    let workflow = (!branches.is_empty()).then(|| {
        let mut all =
            vec![json!({ "name": "entry", "templateType": "Parallel", "children": branches })];
        all.extend(templates);
        json!({
            "apiVersion": CHAOS_API,
            "kind": "Workflow",
            "metadata": {
                "name": name, "namespace": opts.namespace,
                "labels": { Labels::PART_OF.0: Labels::PART_OF.1 },
                "annotations": { "booking.scenario": scenario.name },
            },
            "spec": { "entry": "entry", "templates": all },
        })
    });
    Export {
        workflow,
        job: job(scenario, scenario_toml, &name, opts),
        faults,
    }
}

/// How long a fault lasts; instant ones get the default window (Chaos Mesh
/// needs a deadline, and a pod kill completes at once anyway).
fn lasts(fault: &Fault) -> Duration {
    fault.duration()
}

type Chaos = Option<(&'static str, &'static str, Value)>;

fn selector(label: (&str, &str), opts: &ExportOptions) -> Value {
    json!({ "namespaces": [opts.namespace], "labelSelectors": { label.0: label.1 } })
}

/// The pods a target names, and how many of them (`one` for `replica:N`:
/// replicas of a Deployment are interchangeable, so "replica N" is one pod).
fn pods(target: &Target, opts: &ExportOptions) -> (Value, &'static str) {
    match target {
        Target::Redis => (selector(Labels::REDIS, opts), "all"),
        Target::Database => (selector(Labels::DATABASE, opts), "all"),
        Target::Replica(_) => (selector(Labels::SERVICE, opts), "one"),
        Target::Replicas => (selector(Labels::SERVICE, opts), "all"),
    }
}

/// The link a network fault acts on, as the harness's proxy sits on it:
/// clients ↔ replicas, replicas ↔ Redis, replicas ↔ database.
fn link(target: &Target, action: &str, opts: &ExportOptions) -> Value {
    let (pods, mode) = pods(target, opts);
    let other = match target {
        Target::Replica(_) | Target::Replicas => selector(Labels::CLIENT, opts),
        Target::Redis | Target::Database => selector(Labels::SERVICE, opts),
    };
    json!({
        "action": action, "mode": mode, "selector": pods,
        "direction": "both", "target": { "mode": "all", "selector": other },
    })
}

fn network(spec: Value) -> Chaos {
    Some(("NetworkChaos", "networkChaos", spec))
}

fn pod(spec: Value) -> Chaos {
    Some(("PodChaos", "podChaos", spec))
}

fn translate(fault: &Fault, opts: &ExportOptions) -> (Chaos, Translation) {
    match &fault.kind {
        FaultKind::Latency { .. }
        | FaultKind::Bandwidth { .. }
        | FaultKind::Blackhole { .. }
        | FaultKind::Reset { .. }
        | FaultKind::CloseAfter { .. }
        | FaultKind::DropResponses { .. } => translate_link(&fault.kind, opts),
        FaultKind::KillReplica { .. }
        | FaultKind::PauseReplica { .. }
        | FaultKind::RestartRedis
        | FaultKind::RestartDatabase
        | FaultKind::Failpoint { .. }
        | FaultKind::Command { .. } => translate_process(&fault.kind, opts),
    }
}

/// A fault on a link: a NetworkChaos, the same or its nearest.
fn translate_link(kind: &FaultKind, opts: &ExportOptions) -> (Chaos, Translation) {
    use Translation::{Same, Substitute};
    match kind {
        FaultKind::Latency {
            target,
            latency_ms,
            jitter_ms,
        } => {
            let mut spec = link(target, "delay", opts);
            spec["delay"] = json!({
                "latency": format!("{latency_ms}ms"), "jitter": format!("{jitter_ms}ms"),
            });
            (network(spec), Same)
        }
        FaultKind::Bandwidth {
            target,
            bytes_per_sec,
        } => {
            let mut spec = link(target, "bandwidth", opts);
            // Chaos Mesh counts bits; `limit` and `buffer` are bytes.
            spec["bandwidth"] = json!({
                "rate": format!("{}bps", bytes_per_sec.saturating_mul(8).max(8)),
                "limit": 20_971_520, "buffer": 10_000,
            });
            // tc's bandwidth applies to traffic the selected pods send.
            spec["direction"] = json!("to");
            (network(spec), Same)
        }
        FaultKind::Blackhole { target } => (network(link(target, "partition", opts)), Same),
        FaultKind::Reset { target } => (
            network(link(target, "partition", opts)),
            Substitute(
                "NetworkChaos partition for the fault's window: open connections stall \
                 and time out instead of being reset at once"
                    .into(),
            ),
        ),
        FaultKind::CloseAfter { target, .. } => {
            let mut spec = link(target, "loss", opts);
            spec["loss"] = json!({ "loss": "30", "correlation": "25" });
            (
                network(spec),
                Substitute(
                    "NetworkChaos loss of 30 % of packets: connections break at random \
                     points rather than after a byte count"
                        .into(),
                ),
            )
        }
        FaultKind::DropResponses { target } => {
            let mut spec = link(target, "partition", opts);
            spec["direction"] = json!("to");
            (
                network(spec),
                Substitute(
                    "NetworkChaos partition from the replicas to the clients: requests on \
                     open connections arrive and their answers are lost, as with the proxy, \
                     but new connections cannot be opened during the window"
                        .into(),
                ),
            )
        }
        _ => process_only(kind),
    }
}

/// Not a link fault (the caller routes only link faults here).
fn process_only(kind: &FaultKind) -> (Chaos, Translation) {
    (
        None,
        Translation::Missing(format!("{} is not a fault on a link", kind.name())),
    )
}

/// A fault on a process: a PodChaos, its nearest, or nothing Chaos Mesh
/// can do from outside.
fn translate_process(kind: &FaultKind, opts: &ExportOptions) -> (Chaos, Translation) {
    use Translation::{Missing, Same, Substitute};
    match kind {
        FaultKind::KillReplica { .. } => {
            let (selector, _) = pods(&Target::Replica(0), opts);
            (
                pod(json!({ "action": "pod-kill", "mode": "one", "selector": selector })),
                Substitute(
                    "PodChaos pod-kill of one replica; Kubernetes restarts it when it \
                     restarts it, not after the scenario's restart_after"
                        .into(),
                ),
            )
        }
        FaultKind::PauseReplica { .. } => (
            network(link(&Target::Replica(0), "partition", opts)),
            Substitute(
                "Chaos Mesh cannot SIGSTOP a process; a partition of one replica for the \
                 window is the nearest: it neither answers nor is declared dead, but its \
                 own calls to Redis and the database do not stall the way a frozen \
                 process's do"
                    .into(),
            ),
        ),
        FaultKind::RestartRedis => {
            let (selector, _) = pods(&Target::Redis, opts);
            (
                pod(json!({ "action": "pod-kill", "mode": "all", "selector": selector })),
                // Redis keeps its data in an emptyDir without persistence:
                // a new pod starts empty, as the harness's restart does.
                Same,
            )
        }
        FaultKind::RestartDatabase => {
            let (selector, _) = pods(&Target::Database, opts);
            (
                pod(json!({ "action": "pod-failure", "mode": "all", "selector": selector })),
                Substitute(
                    "PodChaos pod-failure of the database pod for the window: PostgreSQL \
                     is unreachable and comes back with its volume, as after the harness's \
                     immediate stop; its connections end the way a lost pod's do"
                        .into(),
                ),
            )
        }
        FaultKind::Failpoint { .. } => (
            None,
            Missing(
                "failpoints are steps inside the service; Chaos Mesh acts from outside. \
                 Nearest: build the image with `--features failpoints` and set FAILPOINTS \
                 on the Deployment for the run"
                    .into(),
            ),
        ),
        FaultKind::Command { .. } => (
            None,
            Missing(
                "a command fault runs where the harness runs; on a cluster run the \
                 scenario from a machine with kubectl in target mode instead"
                    .into(),
            ),
        ),
        _ => (
            None,
            Missing(format!("{} is a fault on a link", kind.name())),
        ),
    }
}

/// The scenario file in a ConfigMap, and a Job that runs its workload in
/// target mode against the Service, faults left to Chaos Mesh.
fn job(scenario: &Scenario, scenario_toml: &str, name: &str, opts: &ExportOptions) -> Vec<Value> {
    let labels = json!({
        Labels::PART_OF.0: Labels::PART_OF.1,
        Labels::CLIENT.0: Labels::CLIENT.1,
    });
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": format!("{name}-scenario"), "namespace": opts.namespace, "labels": labels },
        "data": { "scenario.toml": scenario_toml },
    });
    let mut args = vec![
        "run".to_owned(),
        "/scenario/scenario.toml".to_owned(),
        format!("--target-url={}", opts.service_url),
        // In-cluster service names are not loopback addresses.
        "--allow-remote".to_owned(),
        "--faults-outside".to_owned(),
        "--out=/tmp/results".to_owned(),
    ];
    let mut env = Vec::new();
    if let Some((secret, key)) = &opts.database_secret {
        args.push("--database-url=$(DATABASE_URL)".to_owned());
        env.push(json!({
            "name": "DATABASE_URL",
            "valueFrom": { "secretKeyRef": { "name": secret, "key": key } },
        }));
    }
    // The workload's own length plus settle and recovery, with room.
    let deadline = scenario.workload.duration.as_secs() + 600;
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": format!("{name}-workload"), "namespace": opts.namespace, "labels": labels,
            "annotations": { "booking.scenario": scenario.name },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": 86_400,
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "harness",
                        "image": opts.image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["booking-harness"],
                        "args": args,
                        "env": env,
                        "resources": {
                            "requests": { "cpu": "250m", "memory": "128Mi" },
                            "limits": { "cpu": "1", "memory": "512Mi" },
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [
                            { "name": "scenario", "mountPath": "/scenario", "readOnly": true },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        { "name": "scenario", "configMap": { "name": format!("{name}-scenario") } },
                        { "name": "tmp", "emptyDir": {} },
                    ],
                },
            },
        },
    });
    vec![config_map, job]
}

/// A DNS-1123 name from a scenario name.
pub fn resource_name(scenario: &str) -> String {
    let mut name: String = scenario
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_owned();
    name.truncate(40);
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "scenario".into()
    } else {
        format!("booking-{name}")
    }
}

/// Go's duration syntax, as Chaos Mesh reads it (`1500ms`, `30s`).
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The summary printed and written as `README.md` beside the documents.
pub fn summary(scenario: &Scenario, export: &Export) -> String {
    let mut out = format!(
        "# Chaos Mesh export of scenario {}\n\n\
         Apply together: `kubectl apply -f .` (the Workflow's times count from its \
         creation; the Job's preflight takes a few seconds before the load starts).\n\n\
         | fault | kind | exported as |\n|---|---|---|\n",
        scenario.name
    );
    for f in &export.faults {
        let how = match &f.translation {
            Translation::Same => "the same fault".to_owned(),
            Translation::Substitute(why) => format!("substitute: {why}"),
            Translation::Missing(why) => format!("NOT EXPORTED: {why}"),
        };
        out.push_str(&format!("| {} | {} | {how} |\n", f.index, f.kind));
    }
    if export.faults.is_empty() {
        out.push_str("| – | – | the scenario has no faults: the Job alone runs its workload |\n");
    }
    out
}

#[cfg(test)]
mod tests;
