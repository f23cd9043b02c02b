//! Command lines parsed as a user would type them.

use super::args::SourceArgs;
use super::*;
use std::net::Ipv4Addr;

#[test]
fn durations() {
    assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("-1").is_err());
    assert!(parse_duration("abc").is_err());
}

#[test]
fn compare_command_line() {
    let cli = Cli::try_parse_from([
        "tidegate-loadtest",
        "--json",
        "compare",
        "--target",
        "direct=ws://127.0.0.1:9001/",
        "--target",
        "tidegate=ws://127.0.0.1:8080/echo@12345",
        "--rounds",
        "2",
        "echo",
        "--connections",
        "4",
        "--in-flight",
        "8",
    ])
    .unwrap();
    assert!(cli.common.json);
    let Command::Compare(c) = cli.command else {
        panic!("not compare")
    };
    assert_eq!(c.targets.len(), 2);
    assert_eq!(c.targets[1].pid, Some(12345));
    assert_eq!(c.rounds, 2);
    let CompareScenario::Echo(e) = c.scenario else {
        panic!("not echo")
    };
    assert_eq!((e.connections, e.in_flight), (4, 8));
}

#[test]
fn http_commands() {
    let cli = Cli::try_parse_from([
        "tidegate-loadtest",
        "compare",
        "--target",
        "tidegate=http://127.0.0.1:18085/bytes/65536@42",
        "http-get",
        "-c",
        "50",
    ])
    .unwrap();
    let Command::Compare(c) = cli.command else {
        panic!("not compare")
    };
    assert!(c.targets[0].target.http);
    let CompareScenario::HttpGet(g) = c.scenario else {
        panic!("not http-get")
    };
    assert_eq!(g.connections, 50);
    let cli = Cli::try_parse_from([
        "x",
        "sse-idle",
        "--url",
        "http://127.0.0.1:18085/sse",
        "-c",
        "9900",
        "--source-ip-count",
        "4",
    ])
    .unwrap();
    let Command::SseIdle { p, .. } = cli.command else {
        panic!("not sse-idle")
    };
    assert_eq!((p.streams, p.sources.addrs().unwrap().len()), (9900, 4));
}

#[test]
fn bars() {
    assert_eq!(
        parse_bar("tidegate=1549.9"),
        Ok(("tidegate".into(), 1549.9))
    );
    assert!(parse_bar("tidegate").is_err());
    assert!(parse_bar("nginx=lots").is_err());
    assert!(parse_bar("nginx=inf").is_err());
}

#[test]
fn bad_target_is_a_usage_error() {
    let r = Cli::try_parse_from(["x", "compare", "--target", "a=ws://10.1.2.3/", "echo"]);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("loopback"), "{msg}");
}

#[test]
fn rate_with_sources_and_pids() {
    let cli = Cli::try_parse_from([
        "tidegate-loadtest",
        "rate",
        "--url",
        "ws://127.0.0.1:8080/mux",
        "-c",
        "5000",
        "--source-ip-count",
        "4",
        "--pid",
        "10",
        "--pid",
        "11",
    ])
    .unwrap();
    let Command::Rate { p, pid, .. } = cli.command else {
        panic!("not rate")
    };
    assert_eq!(pid, vec![10, 11]);
    assert_eq!(p.sources.addrs().unwrap().len(), 4);
}

#[test]
fn fanout_command_line() {
    let cli = Cli::try_parse_from([
        "x",
        "fanout",
        "--url",
        "ws://127.0.0.1:8080/fanout",
        "-c",
        "5000",
        "--duration",
        "5s",
        "--source-ip-count",
        "4",
        "--pid",
        "10",
        "--pid",
        "11",
    ])
    .unwrap();
    let Command::Fanout { p, pid, .. } = cli.command else {
        panic!("not fanout")
    };
    assert_eq!((p.subscribers, p.duration), (5000, Duration::from_secs(5)));
    assert_eq!((pid, p.sources.addrs().unwrap().len()), (vec![10, 11], 4));
}

#[test]
fn source_addresses() {
    let s = SourceArgs {
        source_ips: vec![],
        source_ip_count: Some(3),
    };
    assert_eq!(s.addrs().unwrap().len(), 3);
    let s = SourceArgs {
        source_ips: vec![Ipv4Addr::new(10, 0, 0, 1)],
        source_ip_count: None,
    };
    assert!(s.addrs().is_err());
}
