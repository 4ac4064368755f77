//! The `tcp-proxy` app and its `upstream`: parsing both address families, printing and parsing
//! back, every refused upstream with its exact message, the rule that ties RSS balancing to the
//! uveth driver, and all of a file's problems at once.

use std::net::SocketAddr;

use flowsteer_config::{App, AppKind, Balance, Config, Driver, Profile};

mod common;
use common::{problem, problems, valid};

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// `[[stack.app]]` entries (given as TOML) with the profile they need; the port keeps its
/// default addresses, 198.18.0.1/24 and 2001:db8::1/64.
fn with_apps(entries: &str) -> String {
    format!("[traffic]\nprofile = \"none\"\n{entries}")
}

/// One tcp-proxy on port 80 whose `upstream` line is `upstream` (a TOML value).
fn proxy_to(upstream: &str) -> String {
    with_apps(&format!(
        "[[stack.app]]\nkind = \"tcp-proxy\"\nport = 80\nupstream = {upstream}"
    ))
}

const ALLOWED: &str = "a socket address such as \"198.18.0.2:9000\" or \"[2001:db8::2]:9000\"";
const NO_GATEWAY: &str =
    "the stacks have no gateway, so an off-link upstream could never be reached";

// ---------------------------------------------------------------- accepted

#[test]
fn proxy_with_an_ipv4_and_an_ipv6_upstream() {
    let config = valid(&with_apps(
        "[[stack.app]]\nkind = \"tcp-proxy\"\nport = 80\nupstream = \"198.18.0.2:9000\"\n\
         [[stack.app]]\nkind = \"tcp-proxy\"\nport = 443\nupstream = \"[2001:db8::2]:9000\"\n\
         threads = [1]",
    ));
    assert_eq!(
        config.stack.app,
        vec![
            App::proxy(80, addr("198.18.0.2:9000")),
            App::proxy(443, addr("[2001:db8::2]:9000")).on_threads([1]),
        ]
    );
    let app = &config.stack.app[0];
    assert_eq!(app.kind, AppKind::TcpProxy);
    assert!(app.kind.is_tcp() && app.kind.connects_upstream());
    assert_eq!(app.upstream, Some(addr("198.18.0.2:9000")));
    // The other kinds hold none.
    assert_eq!(App::new(AppKind::Http, 80).upstream, None);

    // Inline tables read the same.
    let inline = valid(
        "[stack]\napp = [{ kind = \"tcp-proxy\", port = 80, upstream = \"198.18.0.2:9000\" }, \
         { kind = \"tcp-proxy\", port = 443, upstream = \"[2001:db8::2]:9000\", threads = [1] }]\n\
         [traffic]\nprofile = \"none\"",
    );
    assert_eq!(inline, config);
}

#[test]
fn upstream_anywhere_on_the_subnet() {
    // The last host of the /24 and the network's first address are neighbours too.
    for upstream in [
        "\"198.18.0.254:1\"",
        "\"198.18.0.0:65535\"",
        "\"[2001:db8::ffff:ffff:ffff:ffff]:9000\"",
    ] {
        valid(&proxy_to(upstream));
    }
    // A wider prefix widens the subnet.
    valid(&format!(
        "[port]\nipv4_prefix = 16\n{}",
        proxy_to("\"198.18.200.9:9000\"")
    ));
    // A /31 point-to-point link has no broadcast address: the peer is the other address
    // (RFC 3021).
    valid(&format!(
        "[port]\nipv4_prefix = 31\n{}",
        proxy_to("\"198.18.0.0:9000\"")
    ));
    // The port's own address moved: its old one is now a neighbour.
    valid(&format!(
        "[port]\nipv4 = \"198.18.0.9\"\n{}",
        proxy_to("\"198.18.0.1:9000\"")
    ));
}

#[test]
fn rss_balancing_with_a_proxy_on_uveth() {
    let config = valid(&format!(
        "[engine]\nbalance = \"rss\"\n{}",
        proxy_to("\"198.18.0.2:9000\"")
    ));
    assert_eq!(config.engine.balance, Balance::Rss);
    assert_eq!(config.port.driver, Driver::Uveth);
    // Software balancing gives every outbound connection a rule: any driver will do.
    let config = valid(&format!(
        "[port]\ndriver = \"afpacket\"\ninterface = \"veth-fs0\"\n{}",
        proxy_to("\"198.18.0.2:9000\"")
    ));
    assert_eq!(config.engine.balance, Balance::Software);
}

#[test]
fn a_proxy_built_in_code() {
    let mut config = Config::default();
    config.traffic.profile = Profile::None;
    config.stack.app = vec![
        App::proxy(80, addr("198.18.0.2:9000")),
        App::new(AppKind::TcpEcho, 7).on_threads(vec![0]),
    ];
    assert_eq!(config.validate(), Ok(()));

    config.stack.app[0].upstream = None;
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        format!("stack.app[0].upstream: required with kind = \"tcp-proxy\" (must be {ALLOWED})")
    );
    config.stack.app[0].upstream = Some(addr("198.18.0.2:9000"));
    config.stack.app[1].upstream = Some(addr("198.18.0.3:7"));
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "stack.app[1].upstream: must be absent with kind = \"tcp-echo\": only kind = \
         \"tcp-proxy\" takes an upstream, got \"198.18.0.3:7\""
    );
}

// ---------------------------------------------------------------- printing and parsing back

#[test]
fn proxies_round_trip() {
    let mut config = Config::default();
    config.traffic.profile = Profile::None;
    config.stack.app = vec![
        App::new(AppKind::Http, 8080),
        App::proxy(80, addr("198.18.0.2:9000")).on_threads([0]),
        App::proxy(80, addr("[2001:db8::2]:9000")).on_threads([1]),
    ];
    assert_eq!(config.validate(), Ok(()));

    let text = config.to_toml_string();
    assert_eq!(valid(&text), config, "{text}");
    assert!(
        text.contains(&format!(
            "\n[[stack.app]]                # stack.app[1]\n\
             kind = \"tcp-proxy\"           # \"tcp-echo\", \"udp-echo\", \"http\", \"discard\" or \
             \"tcp-proxy\"\n\
             port = 80                    # an integer 1..=65535\n\
             upstream = \"198.18.0.2:9000\" # {ALLOWED}\n\
             threads = [0]                # an array of distinct thread indices 0..engine.threads\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nupstream = \"[2001:db8::2]:9000\" # {ALLOWED}\n"
        )),
        "{text}"
    );
    // Only the proxies print an upstream: the http app's table is what it always was.
    assert_eq!(text.matches("\nupstream = ").count(), 2, "{text}");
    assert!(
        text.contains(
            "\n[[stack.app]]                # stack.app[0]\n\
             kind = \"http\"                # \"tcp-echo\", \"udp-echo\", \"http\", \"discard\" or \
             \"tcp-proxy\"\n\
             port = 8080                  # an integer 1..=65535\n\
             threads = []                 # an array of distinct thread indices 0..engine.threads\n"
        ),
        "{text}"
    );
}

// ---------------------------------------------------------------- refused

/// Every refused upstream of a single tcp-proxy (or of another kind), with its exact message.
#[test]
fn refused_upstreams() {
    let cases: &[(&str, String)] = &[
        // The value's type and syntax.
        ("9000", format!("must be {ALLOWED}, got 9000")),
        (
            "\"198.18.0.2\"",
            format!("must be {ALLOWED}, got \"198.18.0.2\""),
        ),
        (
            "\"upstream:9000\"",
            format!("must be {ALLOWED}, got \"upstream:9000\""),
        ),
        (
            "\"2001:db8::2:9000\"",
            format!("must be {ALLOWED}, got \"2001:db8::2:9000\""),
        ),
        (
            "\"198.18.0.2:65536\"",
            format!("must be {ALLOWED}, got \"198.18.0.2:65536\""),
        ),
        // The port.
        (
            "\"198.18.0.2:0\"",
            "must have a port 1..=65535, got \"198.18.0.2:0\"".into(),
        ),
        (
            "\"[2001:db8::2]:0\"",
            "must have a port 1..=65535, got \"[2001:db8::2]:0\"".into(),
        ),
        // Not a unicast host.
        (
            "\"0.0.0.0:9000\"",
            "must be a unicast address (not unspecified), got \"0.0.0.0:9000\"".into(),
        ),
        (
            "\"[::]:9000\"",
            "must be a unicast address (not unspecified), got \"[::]:9000\"".into(),
        ),
        (
            "\"127.0.0.1:9000\"",
            "must be a unicast address (not loopback: a stack cannot reach the host's loopback), \
             got \"127.0.0.1:9000\""
                .into(),
        ),
        (
            "\"[::1]:9000\"",
            "must be a unicast address (not loopback: a stack cannot reach the host's loopback), \
             got \"[::1]:9000\""
                .into(),
        ),
        (
            "\"255.255.255.255:9000\"",
            "must be a unicast address (not broadcast or multicast), got \
             \"255.255.255.255:9000\""
                .into(),
        ),
        (
            "\"224.0.0.1:9000\"",
            "must be a unicast address (not broadcast or multicast), got \"224.0.0.1:9000\"".into(),
        ),
        (
            "\"[ff02::1]:9000\"",
            "must be a unicast address (not multicast), got \"[ff02::1]:9000\"".into(),
        ),
        (
            "\"[::ffff:198.18.0.2]:9000\"",
            "must be a unicast address (not IPv4-mapped: write the IPv4 address itself), got \
             \"[::ffff:198.18.0.2]:9000\""
                .into(),
        ),
        // Not the port itself.
        (
            "\"198.18.0.1:9000\"",
            "must differ from port.ipv4 (198.18.0.1): a proxy cannot connect to its own port, \
             got \"198.18.0.1:9000\""
                .into(),
        ),
        (
            "\"[2001:db8::1]:9000\"",
            "must differ from port.ipv6 (2001:db8::1): a proxy cannot connect to its own port, \
             got \"[2001:db8::1]:9000\""
                .into(),
        ),
        // Off-link.
        (
            "\"198.18.1.2:9000\"",
            format!(
                "must be on-link, inside port.ipv4/port.ipv4_prefix (198.18.0.1/24): \
                 {NO_GATEWAY}, got \"198.18.1.2:9000\""
            ),
        ),
        (
            "\"192.0.2.7:80\"",
            format!(
                "must be on-link, inside port.ipv4/port.ipv4_prefix (198.18.0.1/24): \
                 {NO_GATEWAY}, got \"192.0.2.7:80\""
            ),
        ),
        (
            "\"[2001:db8:0:1::2]:9000\"",
            format!(
                "must be on-link, inside port.ipv6/port.ipv6_prefix (2001:db8::1/64): \
                 {NO_GATEWAY}, got \"[2001:db8:0:1::2]:9000\""
            ),
        ),
        (
            "\"[fe80::2]:9000\"",
            format!(
                "must be on-link, inside port.ipv6/port.ipv6_prefix (2001:db8::1/64): \
                 {NO_GATEWAY}, got \"[fe80::2]:9000\""
            ),
        ),
        // The subnet's broadcast address is not a host.
        (
            "\"198.18.0.255:9000\"",
            "must be a host of port.ipv4/port.ipv4_prefix (198.18.0.1/24), not its broadcast \
             address, got \"198.18.0.255:9000\""
                .into(),
        ),
    ];
    for (upstream, message) in cases {
        let error = Config::from_toml_str(&proxy_to(upstream)).unwrap_err();
        assert_eq!(error.problems().len(), 1, "{upstream}: {error}");
        assert_eq!(
            error.problems()[0].path(),
            Some("stack.app[0].upstream"),
            "{upstream}"
        );
        assert_eq!(
            error.to_string(),
            format!("stack.app[0].upstream: {message}"),
            "{upstream}"
        );
    }
}

#[test]
fn the_subnet_follows_the_port() {
    // A /32 port has no neighbours at all.
    assert_eq!(
        problem(&format!(
            "[port]\nipv4_prefix = 32\n{}",
            proxy_to("\"198.18.0.2:9000\"")
        )),
        format!(
            "stack.app[0].upstream: must be on-link, inside port.ipv4/port.ipv4_prefix \
             (198.18.0.1/32): {NO_GATEWAY}, got \"198.18.0.2:9000\""
        )
    );
    // The broadcast address of a /30.
    assert_eq!(
        problem(&format!(
            "[port]\nipv4_prefix = 30\n{}",
            proxy_to("\"198.18.0.3:9000\"")
        )),
        "stack.app[0].upstream: must be a host of port.ipv4/port.ipv4_prefix (198.18.0.1/30), \
         not its broadcast address, got \"198.18.0.3:9000\""
    );
    assert_eq!(
        problem(&format!(
            "[port]\nipv6 = \"fd00::1\"\nipv6_prefix = 120\n{}",
            proxy_to("\"[fd00::1:2]:9000\"")
        )),
        format!(
            "stack.app[0].upstream: must be on-link, inside port.ipv6/port.ipv6_prefix \
             (fd00::1/120): {NO_GATEWAY}, got \"[fd00::1:2]:9000\""
        )
    );
}

#[test]
fn a_rejected_port_address_is_not_compared_with() {
    // Reported once, at the port; the upstream is not measured against a value the user must
    // change anyway.
    assert_eq!(
        problems(&format!(
            "[port]\nipv4 = \"0.0.0.0\"\nipv6_prefix = 0\n{}\n{}",
            proxy_to("\"10.0.0.2:9000\""),
            "[[stack.app]]\nkind = \"tcp-proxy\"\nport = 81\nupstream = \"[2001:db9::2]:9000\""
        )),
        vec![
            "port.ipv4: must be a unicast IPv4 address (not unspecified, broadcast or \
             multicast), got \"0.0.0.0\"",
            "port.ipv6_prefix: must be 1..=128, got 0",
        ]
    );
}

#[test]
fn a_proxy_needs_an_upstream() {
    assert_eq!(
        problem(&with_apps("[[stack.app]]\nkind = \"tcp-proxy\"\nport = 80")),
        format!("stack.app[0].upstream: required with kind = \"tcp-proxy\" (must be {ALLOWED})")
    );
    // A mistyped upstream is reported as such, not also as missing.
    assert_eq!(
        problem(&proxy_to("[\"198.18.0.2:9000\"]")),
        format!("stack.app[0].upstream: must be {ALLOWED}, got [\"198.18.0.2:9000\"]")
    );
}

#[test]
fn only_a_proxy_takes_an_upstream() {
    for kind in ["tcp-echo", "udp-echo", "http", "discard"] {
        let error = Config::from_toml_str(&with_apps(&format!(
            "[[stack.app]]\nkind = \"{kind}\"\nport = 80\nupstream = \"198.18.0.2:9000\""
        )))
        .unwrap_err();
        assert_eq!(error.problems().len(), 1, "{error}");
        assert_eq!(error.problems()[0].path(), Some("stack.app[0].upstream"));
        assert_eq!(
            error.to_string(),
            format!(
                "stack.app[0].upstream: must be absent with kind = \"{kind}\": only kind = \
                 \"tcp-proxy\" takes an upstream, got \"198.18.0.2:9000\""
            )
        );
    }
    // Without a kind there is nothing to compare with: only the missing kind is reported.
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nport = 80\nupstream = \"198.18.0.2:9000\""
        )),
        "stack.app[0].kind: required key missing (must be \"tcp-echo\", \"udp-echo\", \"http\", \
         \"discard\" or \"tcp-proxy\")"
    );
}

#[test]
fn a_proxy_shares_the_tcp_port_rules() {
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"http\"\nport = 80\n[[stack.app]]\nkind = \"tcp-proxy\"\n\
             port = 80\nupstream = \"198.18.0.2:9000\"\nthreads = [1]"
        )),
        "stack.app[1].port: must differ from stack.app[0].port (80): two TCP apps (\"http\", \
         \"tcp-proxy\") on thread 1, got 80"
    );
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"tcp-proxy\"\nport = 0\nupstream = \"198.18.0.2:9000\""
        )),
        "stack.app[0].port: must be 1..=65535, got 0"
    );
    // A UDP app may share the number; so may a proxy on another thread.
    valid(&with_apps(
        "[[stack.app]]\nkind = \"udp-echo\"\nport = 80\n[[stack.app]]\nkind = \"tcp-proxy\"\n\
         port = 80\nupstream = \"198.18.0.2:9000\"\nthreads = [0]\n[[stack.app]]\n\
         kind = \"tcp-echo\"\nport = 80\nthreads = [1]",
    ));
}

#[test]
fn rss_balancing_with_a_proxy_needs_uveth() {
    let text = format!(
        "[engine]\nbalance = \"rss\"\n[port]\ndriver = \"afpacket\"\ninterface = \"veth-fs0\"\n\
         {}\n[[stack.app]]\nkind = \"tcp-proxy\"\nport = 81\nupstream = \"198.18.0.3:9000\"",
        with_apps("[[stack.app]]\nkind = \"http\"\nport = 80")
    );
    let error = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(error.problems().len(), 1, "{error}");
    assert_eq!(error.problems()[0].path(), Some("port.driver"));
    assert_eq!(
        error.to_string(),
        "port.driver: must be \"uveth\" with engine.balance \"rss\" and a \"tcp-proxy\" app \
         (stack.app[1]): under RSS balancing an outbound connection gets no flow rule, its source \
         port is chosen so that the port's software RSS (port.rss_key, port.reta_size, \
         port.queues) sends the return packets to the connecting thread's queue; no other \
         driver gives a hash the configuration can count on (AF_PACKET's fanout is the kernel's \
         own seeded flow hash, which no source port can aim; a DPDK device's RSS is known only \
         once the device is opened, and many have none; a capture answers nothing) (or set \
         engine.balance \"software\"), got \"afpacket\""
    );
    // RSS balancing on afpacket without a proxy is the demonstration of misdirection:
    // allowed.
    valid(&format!(
        "[engine]\nbalance = \"rss\"\n[port]\ndriver = \"afpacket\"\ninterface = \"veth-fs0\"\n{}",
        with_apps("[[stack.app]]\nkind = \"tcp-echo\"\nport = 7")
    ));
}

// ---------------------------------------------------------------- all at once

#[test]
fn every_problem_of_proxies_at_once() {
    assert_eq!(
        problems(
            "[engine]\nbalance = \"rss\"\n[port]\ndriver = \"afpacket\"\ninterface = \"eth0\"\n\
             [traffic]\nprofile = \"none\"\n\
             [[stack.app]]\nkind = \"tcp-proxy\"\nport = 80\n\
             [[stack.app]]\nkind = \"http\"\nport = 81\nupstream = \"198.18.0.2:9000\"\n\
             [[stack.app]]\nkind = \"tcp-proxy\"\nport = 82\nupstream = \"198.18.0.2\"\n\
             [[stack.app]]\nkind = \"tcp-proxy\"\nport = 83\nupstream = \"127.0.0.1:9000\"\n\
             [[stack.app]]\nkind = \"tcp-proxy\"\nport = 84\nupstream = \"198.18.0.2:0\"\n\
             [[stack.app]]\nkind = \"tcp-proxy\"\nport = 85\nupstream = \"10.1.2.3:9000\"\n\
             [[stack.app]]\nkind = \"tcp-proxy\"\nport = 86\nupstream = \"[2001:db8::1]:9000\"\n\
             [[stack.app]]\nkind = \"tcp-proxy\"\nport = 87\nupstream = \"198.18.0.2:9000\"\n"
        ),
        vec![
            // Where the entries are read.
            format!("stack.app[2].upstream: must be {ALLOWED}, got \"198.18.0.2\""),
            // Each entry on its own.
            format!(
                "stack.app[0].upstream: required with kind = \"tcp-proxy\" (must be {ALLOWED})"
            ),
            "stack.app[1].upstream: must be absent with kind = \"http\": only kind = \
             \"tcp-proxy\" takes an upstream, got \"198.18.0.2:9000\""
                .into(),
            "stack.app[3].upstream: must be a unicast address (not loopback: a stack cannot \
             reach the host's loopback), got \"127.0.0.1:9000\""
                .into(),
            "stack.app[4].upstream: must have a port 1..=65535, got \"198.18.0.2:0\"".into(),
            // The rules between keys.
            format!(
                "stack.app[5].upstream: must be on-link, inside port.ipv4/port.ipv4_prefix \
                 (198.18.0.1/24): {NO_GATEWAY}, got \"10.1.2.3:9000\""
            ),
            "stack.app[6].upstream: must differ from port.ipv6 (2001:db8::1): a proxy cannot \
             connect to its own port, got \"[2001:db8::1]:9000\""
                .into(),
            "port.driver: must be \"uveth\" with engine.balance \"rss\" and a \"tcp-proxy\" app \
             (stack.app[0]): under RSS balancing an outbound connection gets no flow rule, its \
             source port is chosen so that the port's software RSS (port.rss_key, \
             port.reta_size, port.queues) sends the return packets to the connecting thread's \
             queue; no other driver gives a hash the configuration can count on (AF_PACKET's \
             fanout is the kernel's own seeded flow hash, which no source port can aim; a DPDK \
             device's RSS is known only once the device is opened, and many have none; a \
             capture answers nothing) (or set engine.balance \"software\"), got \"afpacket\""
                .into(),
        ]
    );
}
