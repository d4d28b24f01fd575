use super::*;

#[test]
fn names_are_dns_labels() {
    assert_eq!(
        resource_name("cancel-and-rebook"),
        "booking-cancel-and-rebook"
    );
    assert_eq!(resource_name("Redis restart!"), "booking-redis-restart");
    assert_eq!(resource_name("***"), "scenario");
    assert!(resource_name(&"x".repeat(100)).len() <= 48);
}

#[test]
fn durations_read_as_go_durations() {
    assert_eq!(go_duration(Duration::from_secs(3)), "3s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn a_latency_on_redis_acts_on_the_link_between_replicas_and_redis() {
    let s = Scenario::parse(
        r#"name = "x"
        [[faults]]
        at = "2s"
        for = "3s"
        kind = "latency"
        target = "redis"
        latency_ms = 200
        jitter_ms = 20
        "#,
    )
    .expect("scenario");
    let e = export(&s, "", &ExportOptions::default());
    assert_eq!(e.faults[0].translation, Translation::Same);
    let wf = e.workflow.expect("workflow");
    let templates = wf["spec"]["templates"].as_array().expect("templates");
    let chaos = templates
        .iter()
        .find(|t| t["templateType"] == "NetworkChaos")
        .expect("network chaos");
    assert_eq!(chaos["deadline"], "3s");
    let spec = &chaos["networkChaos"];
    assert_eq!(spec["action"], "delay");
    assert_eq!(spec["delay"]["latency"], "200ms");
    assert_eq!(
        spec["selector"]["labelSelectors"]["app.kubernetes.io/name"],
        "redis"
    );
    assert_eq!(
        spec["target"]["selector"]["labelSelectors"]["app.kubernetes.io/name"],
        "booking"
    );
    let wait = templates
        .iter()
        .find(|t| t["templateType"] == "Suspend")
        .expect("wait");
    assert_eq!(wait["deadline"], "2s");
}
