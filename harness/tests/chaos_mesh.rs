//! `booking-harness export chaos-mesh` for every shipped scenario: the
//! documents parse, have the fields Chaos Mesh and Kubernetes require, and
//! their selectors name labels that the manifests in `k8s/` put on pods.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `key=value` of every pod template's labels in `k8s/` (base and components).
fn pod_labels() -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut stack = vec![root().join("k8s")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("k8s/ exists").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && !path.to_string_lossy().contains(".example.")
            {
                for doc in yaml_docs(&path) {
                    if let Some(map) = doc["spec"]["template"]["metadata"]["labels"].as_object() {
                        for (k, v) in map {
                            labels.insert(format!("{k}={}", v.as_str().unwrap_or_default()));
                        }
                    }
                }
            }
        }
    }
    labels
}

fn selector_labels(selector: &Value) -> Vec<String> {
    selector["labelSelectors"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn check_chaos(kind: &str, spec: &Value, known: &BTreeSet<String>, job_labels: &BTreeSet<String>) {
    let action = spec["action"].as_str().expect("action");
    assert!(
        ["one", "all", "fixed", "fixed-percent", "random-max-percent"]
            .contains(&spec["mode"].as_str().expect("mode")),
        "{spec}"
    );
    let mut selectors = vec![&spec["selector"]];
    match kind {
        "NetworkChaos" => {
            assert!(
                [
                    "delay",
                    "loss",
                    "partition",
                    "bandwidth",
                    "duplicate",
                    "corrupt"
                ]
                .contains(&action),
                "{action}"
            );
            match action {
                "delay" => assert!(spec["delay"]["latency"].is_string(), "{spec}"),
                "loss" => assert!(spec["loss"]["loss"].is_string(), "{spec}"),
                "bandwidth" => {
                    let b = &spec["bandwidth"];
                    assert!(
                        b["rate"].as_str().is_some_and(|r| r.ends_with("bps")),
                        "{spec}"
                    );
                    assert!(b["limit"].as_u64().is_some() && b["buffer"].as_u64().is_some());
                }
                _ => {}
            }
            assert!(["to", "from", "both"].contains(&spec["direction"].as_str().unwrap_or("to")));
            if spec["direction"] == "both" || spec["direction"] == "from" {
                assert!(
                    spec["target"].is_object(),
                    "direction needs a target: {spec}"
                );
            }
            if spec["target"].is_object() {
                selectors.push(&spec["target"]["selector"]);
            }
        }
        "PodChaos" => {
            assert!(
                ["pod-kill", "pod-failure", "container-kill"].contains(&action),
                "{action}"
            );
            if action == "container-kill" {
                assert!(spec["containerNames"].is_array());
            }
        }
        other => panic!("unexpected chaos kind {other}"),
    }
    for selector in selectors {
        assert_eq!(selector["namespaces"], serde_json::json!(["booking"]));
        let labels = selector_labels(selector);
        assert!(!labels.is_empty(), "{selector}");
        for label in labels {
            assert!(
                known.contains(&label) || job_labels.contains(&label),
                "selector label {label} is on no pod of k8s/ nor the Job"
            );
        }
    }
}

#[test]
fn every_shipped_scenario_exports_or_says_why_not() {
    let known = pod_labels();
    assert!(
        known.contains("app.kubernetes.io/name=booking"),
        "{known:?}"
    );
    let out = tempfile::tempdir().expect("dir");
    let mut exported_faults = 0;
    let mut scenarios: Vec<_> = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    scenarios.sort();
    for scenario in &scenarios {
        let dir = out.path().join(scenario.file_stem().expect("stem"));
        let run = Command::new(env!("CARGO_BIN_EXE_booking-harness"))
            .args(["export", "chaos-mesh"])
            .arg(scenario)
            .arg("--out")
            .arg(&dir)
            .output()
            .expect("run the exporter");
        assert!(
            run.status.success(),
            "{}: {}",
            scenario.display(),
            String::from_utf8_lossy(&run.stderr)
        );
        let parsed = booking_harness::scenario::Scenario::load(scenario).expect("scenario");
        let readme = std::fs::read_to_string(dir.join("README.md")).expect("README.md");
        for (i, fault) in parsed.faults.iter().enumerate() {
            assert!(
                readme.contains(&format!("| {i} | {} |", fault.kind.name())),
                "{}: fault {i} is neither exported nor explained:\n{readme}",
                scenario.display()
            );
        }

        let job = yaml_docs(&dir.join("job.yaml"));
        let kinds: Vec<_> = job
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Job"]);
        let pod = &job[1]["spec"]["template"];
        let job_labels: BTreeSet<String> = pod["metadata"]["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        assert!(job_labels.contains("app.kubernetes.io/component=chaos-client"));
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        let args: Vec<_> = pod["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(args.contains(&"--faults-outside"), "{args:?}");
        assert_eq!(
            job[0]["data"]["scenario.toml"].as_str(),
            Some(std::fs::read_to_string(scenario).expect("toml").as_str()),
            "the Job runs the file as written"
        );

        let workflow_file = dir.join("workflow.yaml");
        if !workflow_file.exists() {
            assert!(
                !readme.contains("| the same fault |") && !readme.contains("substitute:"),
                "{}: exported faults but no workflow",
                scenario.display()
            );
            continue;
        }
        let wf = &yaml_docs(&workflow_file)[0];
        assert_eq!(wf["apiVersion"], "chaos-mesh.org/v1alpha1");
        assert_eq!(wf["kind"], "Workflow");
        assert_eq!(wf["metadata"]["namespace"], "booking");
        let templates = wf["spec"]["templates"].as_array().expect("templates");
        let names: BTreeSet<_> = templates
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(wf["spec"]["entry"].as_str().expect("entry")));
        for t in templates {
            for child in t["children"].as_array().into_iter().flatten() {
                assert!(names.contains(child.as_str().expect("child")), "{child}");
            }
            match t["templateType"].as_str().expect("templateType") {
                "Serial" | "Parallel" => assert!(t["children"].is_array()),
                "Suspend" => assert!(t["deadline"].is_string()),
                kind @ ("NetworkChaos" | "PodChaos") => {
                    assert!(t["deadline"].is_string(), "{t}");
                    let field = if kind == "NetworkChaos" {
                        "networkChaos"
                    } else {
                        "podChaos"
                    };
                    check_chaos(kind, &t[field], &known, &job_labels);
                    exported_faults += 1;
                }
                other => panic!("unexpected template type {other}"),
            }
        }
    }
    assert!(
        exported_faults >= 10,
        "only {exported_faults} faults exported"
    );
}
