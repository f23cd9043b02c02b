use super::*;

fn offers(v: &str) -> Vec<Params> {
    client_offers([v])
}

#[test]
fn parses_every_parameter_and_prints_it_back() {
    let p = Params::parse(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=\"10\"; client_max_window_bits",
    )
    .expect("valid");
    assert!(p.server_no_context_takeover && p.client_no_context_takeover);
    assert_eq!(p.server_max_window_bits, Some(10));
    assert_eq!(p.client_max_window_bits, Some(WindowBits::Any));
    assert_eq!(
        p.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits"
    );
}

#[test]
fn refuses_invalid_parameters() {
    for bad in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        "permessage-deflate; mystery",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(Params::parse(bad), None, "{bad}");
    }
}

#[test]
fn offer_keeps_only_valid_permessage_deflate_elements() {
    let got = client_offers([
        "x-foo, permessage-deflate; client_max_window_bits",
        "permessage-deflate; bogus, permessage-deflate",
    ]);
    assert_eq!(
        forwardable_offer(&got).as_deref(),
        Some("permessage-deflate; client_max_window_bits, permessage-deflate")
    );
    assert_eq!(forwardable_offer(&client_offers(["x-foo"])), None);
}

#[test]
fn answer_must_match_an_offer() {
    let o = offers("permessage-deflate; client_max_window_bits");
    let ok = |a: &str| check_answer([a], &o);
    assert_eq!(ok(""), Ok(None));
    assert!(matches!(ok("permessage-deflate"), Ok(Some(_))));
    assert!(matches!(
        ok("permessage-deflate; client_max_window_bits=10; server_max_window_bits=12"),
        Ok(Some(_))
    ));
    assert_eq!(ok("x-foo"), Err(AnswerError::NotOffered));
    assert_eq!(
        ok("permessage-deflate, permessage-deflate"),
        Err(AnswerError::Several)
    );
    assert_eq!(
        ok("permessage-deflate; server_max_window_bits=16"),
        Err(AnswerError::InvalidParams)
    );
    // A value is required in an answer.
    assert_eq!(
        ok("permessage-deflate; client_max_window_bits"),
        Err(AnswerError::Inconsistent)
    );
    // Not offered: the client did not say it could take a smaller window.
    let plain = offers("permessage-deflate");
    assert_eq!(
        check_answer(["permessage-deflate; client_max_window_bits=9"], &plain),
        Err(AnswerError::Inconsistent)
    );
    assert_eq!(
        check_answer(["permessage-deflate"], &[]),
        Err(AnswerError::NotOffered)
    );
}

#[test]
fn answer_honours_the_offers_limits() {
    let o = offers("permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
    assert_eq!(
        check_answer(["permessage-deflate; server_max_window_bits=10"], &o),
        Err(AnswerError::Inconsistent),
        "server_no_context_takeover was asked for"
    );
    assert_eq!(
        check_answer(
            ["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"],
            &o
        ),
        Err(AnswerError::Inconsistent),
        "a larger window than offered"
    );
    assert!(check_answer(
        ["permessage-deflate; server_no_context_takeover; server_max_window_bits=9"],
        &o
    )
    .is_ok());
    // Any one of several offers may be the one answered.
    let two = offers("permessage-deflate; server_max_window_bits=9, permessage-deflate");
    assert!(check_answer(["permessage-deflate"], &two).is_ok());
}
