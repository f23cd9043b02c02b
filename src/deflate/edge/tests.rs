use super::*;
use crate::deflate::params::client_offers;

fn cfg() -> EdgeConfig {
    EdgeConfig {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        level: 6,
        min_size: 0,
    }
}

#[test]
fn answers_honour_the_offer_and_the_levers() {
    let browser = client_offers(["permessage-deflate; client_max_window_bits"]);
    assert_eq!(
        cfg().answer(&browser).map(|p| p.to_string()).as_deref(),
        Some("permessage-deflate")
    );
    let tight = EdgeConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 9,
        ..cfg()
    };
    let answer = tight.answer(&browser).expect("accepted");
    assert_eq!(
        answer.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=9"
    );
    // Whatever the gateway answers is a valid answer to the offer.
    assert!(browser.iter().any(|o| answer.answers(o)));
    // zlib cannot compress with an 8-bit window: that offer is declined,
    // the next one taken.
    let two = client_offers(["permessage-deflate; server_max_window_bits=8, permessage-deflate"]);
    assert_eq!(cfg().answer(&two), Some(Params::default()));
    assert_eq!(cfg().answer(&two[..1]), None);
}

#[test]
fn budget_declines_when_spent_and_refills_on_drop() {
    let b = Budget::new(100);
    let r1 = b.reserve(60).expect("fits");
    assert!(b.reserve(60).is_none());
    let r2 = b.reserve(40).expect("fits exactly");
    assert_eq!(b.used(), 100);
    drop(r1);
    drop(r2);
    assert_eq!(b.used(), 0);
    let p = Params::default();
    assert!(
        session_memory(&p) > 128 * 1024,
        "15-bit windows cost over 128 KiB"
    );
}
