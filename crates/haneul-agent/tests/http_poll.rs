//! The HTTP transport's long poll, against servers that never answer it: it is given up when
//! the agent stops, and when another call moved the agent to another server, rather than waited
//! out for its whole wait.

use haneul_agent::node::{Stop, Transport, http::HttpTransport};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A server that accepts connections and never answers: the first connection is held open (a
/// poll a frozen server holds); with `refuse_after_first`, every later one is closed at once
/// (that server's failure as another call meets it).
fn mute_server(refuse_after_first: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, conn) in listener.incoming().enumerate() {
            match conn {
                Ok(c) if i == 0 || !refuse_after_first => held.push(c),
                Ok(c) => drop(c),
                Err(_) => {}
            }
        }
    });
    format!("http://{addr}")
}

fn never() -> Stop {
    Arc::new(|| false)
}

#[test]
fn a_held_poll_is_given_up_when_the_agent_stops() {
    let transport = HttpTransport::new(&mute_server(false), "token".into(), None).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let stop: Stop = {
        let flag = flag.clone();
        Arc::new(move || flag.load(Ordering::SeqCst))
    };
    let setter = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::SeqCst);
        })
    };
    let began = Instant::now();
    let err = transport
        .assignments(1, 30_000, Some("tag"), &stop)
        .expect_err("a poll nobody answers cannot succeed");
    let took = began.elapsed();
    setter.join().unwrap();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "the poll ended after {took:?}, not soon after the stop: {err}"
    );
    assert!(err.to_string().contains("stopping"), "{err}");
}

#[test]
fn a_held_poll_is_given_up_when_another_call_moves_the_agent() {
    let first = mute_server(true);
    let second = mute_server(false);
    let transport =
        Arc::new(HttpTransport::new(&format!("{first},{second}"), "token".into(), None).unwrap());
    let poll = {
        let transport = transport.clone();
        std::thread::spawn(move || {
            let began = Instant::now();
            let outcome = transport.assignments(1, 30_000, Some("tag"), &never());
            (outcome, began.elapsed())
        })
    };
    // The poll is held by the first server; a heartbeat meets that server's failure, and the
    // client moves to the second.
    std::thread::sleep(Duration::from_millis(300));
    assert!(transport.heartbeat(1).is_err());
    assert_eq!(transport.server(), second);
    let (outcome, took) = poll.join().unwrap();
    let err = outcome.expect_err("a poll nobody answers cannot succeed");
    assert!(
        took < Duration::from_secs(3),
        "the poll ended after {took:?}, not soon after the move: {err}"
    );
    assert!(err.to_string().contains("moved"), "{err}");
}
