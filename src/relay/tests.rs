use super::close::own_frame;
use super::scan::Stop;
use super::*;
use crate::frame::Opcode;

#[test]
fn own_frames_are_masked_only_towards_the_upstream() {
    let code = 1001u16.to_be_bytes();
    let close = own_frame(Opcode::Close, &[&code, b"going away"], false);
    assert_eq!(close[0], 0x88);
    assert_eq!(close[1], 12);
    assert_eq!(&close[2..4], &1001u16.to_be_bytes());
    assert_eq!(&close[4..], b"going away");

    let masked = own_frame(Opcode::Close, &[&code, b"going away"], true);
    assert_eq!(masked[0], 0x88);
    assert_eq!(masked[1], 0x80 | 12);
    let key = [masked[2], masked[3], masked[4], masked[5]];
    let payload: Vec<u8> = masked[6..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i & 3])
        .collect();
    assert_eq!(&payload[..2], &1001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"going away");
}

#[test]
fn own_frames_pass_the_scanner_of_the_receiving_side() {
    let limits = Limits {
        max_frame: 1024,
        max_message: 1024,
    };
    // What the upstream receives from the gateway must look like client frames.
    let mut upstream_view = scan::Scanner::new(true);
    let ping = own_frame(Opcode::Ping, &[], true);
    assert_eq!(upstream_view.scan(&ping, limits), (ping.len(), None));
    let code = 1014u16.to_be_bytes();
    let close = own_frame(Opcode::Close, &[&code, b"upstream went away"], false);
    let mut client_view = scan::Scanner::new(false);
    assert_eq!(
        client_view.scan(&close, limits),
        (close.len(), Some(Stop::Close(Some(1014))))
    );
}

#[test]
fn session_state_stays_small() {
    // Idle memory per connection is a product feature: keep an eye on it.
    let size = std::mem::size_of::<Session>();
    println!(
        "Session: {size} bytes, Leg: {}, Running: {}, Sleep: {}, drain future: {}",
        std::mem::size_of::<Leg>(),
        std::mem::size_of::<Running>(),
        std::mem::size_of::<Sleep>(),
        std::mem::size_of::<crate::shutdown::DrainSignal>()
    );
    assert!(size < 1024, "Session grew to {size} bytes");
}
