use super::*;

#[test]
fn host_patterns() {
    assert_eq!(HostMatch::parse("").unwrap(), HostMatch::Any);
    assert_eq!(
        HostMatch::parse("A.example.com").unwrap(),
        HostMatch::Exact("a.example.com".into())
    );
    assert_eq!(
        HostMatch::parse("*.example.com").unwrap(),
        HostMatch::Suffix(".example.com".into())
    );
    assert!(HostMatch::parse("*.").is_err());
    assert!(HostMatch::parse("a b").is_err());
    assert!(HostMatch::parse("a..b").is_err());
    let s = HostMatch::parse("*.example.com").unwrap();
    assert!(s.matches("chat.example.com"));
    assert!(s.matches("a.b.example.com"));
    assert!(!s.matches("example.com"));
    assert!(!s.matches("badexample.com"));
}

#[test]
fn prefixes_match_on_segments() {
    let cases = [
        ("/", "/anything", true),
        ("/chat", "/chat", true),
        ("/chat", "/chat/room", true),
        ("/chat", "/chatroom", false),
        ("/chat", "/", false),
        ("/a/b", "/a/b/c", true),
        ("/a/b", "/a", false),
    ];
    for (prefix, path, want) in cases {
        assert_eq!(prefix_matches(prefix, path), want, "{prefix} vs {path}");
    }
}

#[test]
fn normalize() {
    assert_eq!(normalize_prefix("/").unwrap(), "/");
    assert_eq!(normalize_prefix("/chat/").unwrap(), "/chat");
    assert_eq!(normalize_prefix("//").unwrap(), "/");
    assert!(normalize_prefix("chat").is_err());
    assert!(normalize_prefix("/a?b").is_err());
}

#[test]
fn host_port_stripping() {
    assert_eq!(host_without_port("Example.com:8080"), "example.com");
    assert_eq!(host_without_port("example.com"), "example.com");
    assert_eq!(host_without_port("[::1]:80"), "::1");
    assert_eq!(host_without_port("127.0.0.1:1"), "127.0.0.1");
}
