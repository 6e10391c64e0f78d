use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::*;

const SAFETY_NET: Duration = Duration::from_secs(30);

fn book() -> (tempfile::TempDir, LogBook) {
    let dir = tempfile::tempdir().unwrap();
    let book = LogBook::new(dir.path().join("pods"));
    book.register_pod("ns", "p", "u1", &["app".to_string()]);
    (dir, book)
}

async fn collect(source: LogSource, tail: Option<u64>, follow: bool) -> String {
    let stream = source.open(tail, follow).await.unwrap();
    let chunks: Vec<_> = tokio::time::timeout(SAFETY_NET, stream.collect::<Vec<_>>())
        .await
        .expect("stream ended");
    let bytes: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// Writes one finished attempt: `out` on stdout, then (once stored) `err` on stderr.
async fn finished_attempt(book: &LogBook, restart: u32, out: &str, err: &str) {
    let mut attempt = book
        .start_attempt("ns", "p", "u1", "app", restart)
        .await
        .unwrap();
    let mut progress = book.find("ns", "p", "app", false).unwrap().progress;
    let pump = tokio::spawn(attempt.pump.run());
    attempt.stdout.write_all(out.as_bytes()).await.unwrap();
    let stored = progress.wait_for(|p| p.len == out.len() as u64);
    tokio::time::timeout(SAFETY_NET, stored)
        .await
        .unwrap()
        .unwrap();
    attempt.stderr.write_all(err.as_bytes()).await.unwrap();
    drop(attempt.stdout);
    drop(attempt.stderr);
    pump.await.unwrap();
}

#[tokio::test]
async fn writes_both_streams_to_the_attempt_file() {
    let (dir, book) = book();
    finished_attempt(&book, 0, "out\n", "err\n").await;
    let path = dir.path().join("pods/ns_p_u1/app/0.log");
    assert_eq!(std::fs::read_to_string(path).unwrap(), "out\nerr\n");
    let text = collect(book.find("ns", "p", "app", false).unwrap(), None, false).await;
    assert_eq!(text, "out\nerr\n");
}

#[tokio::test]
async fn tails_the_last_lines() {
    let (_dir, book) = book();
    finished_attempt(&book, 0, "a\nb\nc\n", "").await;
    let find = || book.find("ns", "p", "app", false).unwrap();
    assert_eq!(collect(find(), Some(2), false).await, "b\nc\n");
    assert_eq!(collect(find(), Some(1), false).await, "c\n");
    assert_eq!(collect(find(), Some(9), false).await, "a\nb\nc\n");
    assert_eq!(collect(find(), Some(0), false).await, "");
}

#[tokio::test]
async fn tail_counts_an_unfinished_last_line() {
    let (_dir, book) = book();
    finished_attempt(&book, 0, "a\nb\nc", "").await;
    let source = book.find("ns", "p", "app", false).unwrap();
    assert_eq!(collect(source, Some(2), false).await, "b\nc");
}

async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    let next = tokio::time::timeout(SAFETY_NET, stream.next()).await;
    next.expect("chunk in time")
}

#[tokio::test]
async fn follow_sees_new_bytes_and_ends_with_the_attempt() {
    let (_dir, book) = book();
    let mut attempt = book.start_attempt("ns", "p", "u1", "app", 0).await.unwrap();
    let pump = tokio::spawn(attempt.pump.run());
    attempt.stdout.write_all(b"first\n").await.unwrap();

    let source = book.find("ns", "p", "app", false).unwrap();
    let mut stream = Box::pin(source.open(None, true).await.unwrap());
    let first = next(&mut stream).await;
    assert_eq!(&first.unwrap().unwrap()[..], b"first\n");

    attempt.stderr.write_all(b"second\n").await.unwrap();
    let second = next(&mut stream).await;
    assert_eq!(&second.unwrap().unwrap()[..], b"second\n");

    drop(attempt.stdout);
    drop(attempt.stderr);
    assert!(
        next(&mut stream).await.is_none(),
        "follow ends with the attempt"
    );
    pump.await.unwrap();
}

#[tokio::test]
async fn a_non_following_read_stops_at_what_was_written() {
    let (_dir, book) = book();
    let mut attempt = book.start_attempt("ns", "p", "u1", "app", 0).await.unwrap();
    let pump = tokio::spawn(attempt.pump.run());
    attempt.stdout.write_all(b"one\n").await.unwrap();
    let source = book.find("ns", "p", "app", false).unwrap();
    let mut progress = source.progress.clone();
    tokio::time::timeout(SAFETY_NET, progress.wait_for(|p| p.len == 4))
        .await
        .unwrap()
        .unwrap();
    // Still running: a plain read returns the bytes so far and ends.
    assert_eq!(collect(source, None, false).await, "one\n");
    drop(attempt.stdout);
    drop(attempt.stderr);
    pump.await.unwrap();
}

#[tokio::test]
async fn previous_is_the_attempt_before_the_newest() {
    let (_dir, book) = book();
    assert_eq!(
        book.find("ns", "p", "app", false).err().unwrap(),
        LogLookupError::NotStarted {
            namespace: "ns".into(),
            pod: "p".into(),
            container: "app".into()
        }
    );
    finished_attempt(&book, 0, "zero\n", "").await;
    assert!(matches!(
        book.find("ns", "p", "app", true),
        Err(LogLookupError::NoPrevious { .. })
    ));
    finished_attempt(&book, 1, "one\n", "").await;
    let current = collect(book.find("ns", "p", "app", false).unwrap(), None, false).await;
    let previous = collect(book.find("ns", "p", "app", true).unwrap(), None, false).await;
    assert_eq!((current.as_str(), previous.as_str()), ("one\n", "zero\n"));
}

#[tokio::test]
async fn unknown_pods_and_containers_are_not_found() {
    let (_dir, book) = book();
    let err = book.find("ns", "nope", "app", false).err().unwrap();
    assert!(err.is_not_found());
    let err = book.find("ns", "p", "other", false).err().unwrap();
    assert!(err.is_not_found());
    assert!(
        !book
            .find("ns", "p", "app", false)
            .err()
            .unwrap()
            .is_not_found()
    );
}

#[tokio::test]
async fn forgetting_a_pod_respects_a_newer_namesake() {
    let (_dir, book) = book();
    book.register_pod("ns", "p", "u2", &["app".to_string()]);
    assert_eq!(book.forget_pod("ns", "p", "u1"), None);
    assert!(book.forget_pod("ns", "p", "u2").is_some());
    assert!(book.find("ns", "p", "app", false).is_err());
}
