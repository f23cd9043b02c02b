//! Every `--help` page of the real `tidegate-loadtest` binary reads right:
//! each command's title is its own (not the doc comment of a flattened
//! group of flags, as `compare echo` once showed "Frame type of generated
//! messages"), parents list the same titles, and every flag says what it
//! does.

#[path = "../../tests/help/walk.rs"]
mod walk;

const BIN: &str = env!("CARGO_BIN_EXE_tidegate-loadtest");

#[test]
fn every_help_page_has_the_right_title() {
    walk::check(
        BIN,
        &[
            (
                "",
                "Load generator for tidegate and other WebSocket proxies (loopback targets only)",
            ),
            (
                "echo",
                "Closed loop: round trips with N messages in flight per connection",
            ),
            (
                "rate",
                "Open loop: a fixed message rate per connection; latency from the intended send \
                 time (no coordinated omission)",
            ),
            (
                "connect",
                "Connection storm: open, upgrade, (message), close — N times",
            ),
            (
                "idle",
                "Hold C idle connections; report ramp connects/s and server RSS per connection",
            ),
            (
                "fanout",
                "Broadcast: S subscribers that only read while the application publishes",
            ),
            (
                "compare",
                "Run one scenario against several targets in alternation",
            ),
            (
                "compare echo",
                "Closed loop against each target: round trips with N messages in flight",
            ),
            (
                "compare rate",
                "Open loop against each target: a fixed message rate per connection",
            ),
            (
                "compare connect",
                "Connection storm against each target: open, upgrade, (message), close",
            ),
            (
                "bars",
                "Draw a bar chart SVG from NAME=VALUE pairs (bench.sh's idle memory)",
            ),
            ("echo-server", "WebSocket echo upstream for benchmarks"),
            (
                "http-get",
                "HTTP/1.1 closed loop: GET after GET on keep-alive connections",
            ),
            (
                "sse-idle",
                "Hold S idle Server-Sent Events streams; report RSS per stream",
            ),
            (
                "compare http-get",
                "HTTP/1.1 closed loop against each target (http:// URLs)",
            ),
            (
                "http-server",
                "HTTP/1.1 upstream for the HTTP benchmarks (`/`, `/bytes/N`, `/sse`)",
            ),
        ],
    );
}
