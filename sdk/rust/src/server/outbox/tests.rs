use std::sync::atomic::AtomicBool;

use super::*;
use crate::codec::{decode, KIND_BINARY};

fn frames_in(out: Out) -> Vec<Frame> {
    match out {
        Out::Batch(b) => decode(b.freeze(), u32::MAX)
            .map(|f| f.expect("valid"))
            .collect(),
        _ => panic!("expected a batch"),
    }
}

#[tokio::test]
async fn queued_frames_leave_in_batches_of_at_most_64_kib() {
    let outbox = Outbox::new(usize::MAX);
    let live = AtomicBool::new(false);
    // 20 frames of 10 KiB (+ header): six fit in 64 KiB.
    for i in 0..20u32 {
        let f = Frame::message(i + 1, KIND_BINARY, true, vec![0u8; 10 * 1024]);
        assert!(outbox.push_data(vec![f], &live, true).await.is_ok());
    }
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < 20 {
        let got = frames_in(outbox.next().await);
        total += got.len();
        sizes.push(got.len());
    }
    assert_eq!(sizes, vec![6, 6, 6, 2]);
}

/// Sessions the runtime runs in one go (as after one read of the
/// gateway's batch) leave their replies in one message: the writer, woken
/// by the first and run next by tokio, first lets the others queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn replies_of_sessions_run_together_leave_in_one_batch() {
    let outbox = Arc::new(Outbox::new(usize::MAX));
    let o = Arc::clone(&outbox);
    let writer = tokio::spawn(async move { frames_in(o.next().await).len() });
    // The writer runs and waits for frames (were it to start after the
    // pushes, it would find all three whatever it did).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let o = Arc::clone(&outbox);
    // On the worker, like the SDK's reader handing messages to sessions.
    tokio::spawn(async move {
        for i in 0..3u32 {
            let o = Arc::clone(&o);
            tokio::spawn(async move {
                let live = AtomicBool::new(false);
                let f = Frame::message(i + 1, KIND_BINARY, true, vec![0u8; 16]);
                assert!(o.push_data(vec![f], &live, true).await.is_ok());
            });
        }
    });
    assert_eq!(writer.await.expect("writer task"), 3, "one batch of three");
}

#[tokio::test]
async fn a_frame_over_the_batch_size_goes_alone() {
    let outbox = Outbox::new(usize::MAX);
    outbox.push_control(Frame::ping(&b"a"[..]));
    let big = Frame::message(1, KIND_BINARY, true, vec![1u8; BATCH_BYTES + 1]);
    outbox.push_control(big.clone());
    outbox.push_control(Frame::ping(&b"b"[..]));
    assert_eq!(frames_in(outbox.next().await), vec![Frame::ping(&b"a"[..])]);
    assert_eq!(frames_in(outbox.next().await), vec![big]);
    assert_eq!(frames_in(outbox.next().await), vec![Frame::ping(&b"b"[..])]);
}

#[tokio::test]
async fn data_waits_for_room_but_control_does_not() {
    let outbox = Outbox::new(100);
    let live = AtomicBool::new(false);
    let f = || Frame::message(1, KIND_BINARY, true, vec![0u8; 200]);
    // Over the bound after one message (the bound is soft).
    assert!(outbox.push_data(vec![f()], &live, true).await.is_ok());
    assert!(matches!(
        outbox.push_data(vec![f()], &live, false).await,
        Err(PushError::Full)
    ));
    assert!(outbox.push_control(Frame::ping(&b"p"[..])));
    let _ = outbox.next().await; // drains both
    assert!(outbox.push_data(vec![f()], &live, false).await.is_ok());
    // A finished session queues nothing.
    let finished = AtomicBool::new(true);
    let _ = outbox.next().await;
    assert!(matches!(
        outbox.push_data(vec![f()], &finished, true).await,
        Err(PushError::Finished)
    ));
    outbox.end();
    assert!(matches!(
        outbox.push_data(vec![f()], &live, true).await,
        Err(PushError::Ended(_))
    ));
    assert!(matches!(outbox.next().await, Out::End));
}
