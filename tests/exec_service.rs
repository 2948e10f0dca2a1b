//! A long-running service: the dashboard script on a free port, the readiness probe, the
//! port-in-use check, and the engine telling us when the service exits.

mod exec_support;

use exec_support::{config, run, TestDir};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use titan::worker::exec::{
    port_in_use, wait_port_ready, JobSpec, ProcessEngine, Program, Termination,
};

/// A port nobody listens on right now (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_dashboard_runs_as_a_service_until_stopped() {
    let dir = TestDir::new("service");
    let config = config(&dir);
    let port = free_port();
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        assert!(
            !port_in_use(port).unwrap(),
            "port {port} is free before the deploy"
        );
        let program = Program::perm_file("server_dashboard.py", vec![port.to_string()]);
        // No timeout: a service runs until stopped.
        let job = engine
            .launch(JobSpec::new("dash", "dash", program))
            .unwrap();
        let waited = wait_port_ready(port, Instant::now() + Duration::from_secs(20))
            .await
            .expect("the dashboard accepts connections");
        assert!(port_in_use(port).unwrap(), "the service holds its port");
        assert!(
            job.try_outcome().is_none(),
            "still running after {waited:?}"
        );

        // A real HTTP exchange (a blocking client is fine in a test: the server is another process).
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
        assert!(reply.ends_with("ok\n"), "{reply}");

        job.cancel();
        let outcome = job.outcome().await;
        assert!(
            matches!(
                outcome.termination,
                Termination::Cancelled { escalated: false }
            ),
            "{outcome:?}"
        );
        assert!(!port_in_use(port).unwrap(), "the port is released");
    });
}

#[test]
fn a_service_that_exits_is_reported() {
    let dir = TestDir::new("service-exit");
    let config = config(&dir);
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        // A port that is already taken makes the dashboard fail at start-up.
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        assert!(port_in_use(port).unwrap());
        let program = Program::perm_file("server_dashboard.py", vec![port.to_string()]);
        let job = engine
            .launch(JobSpec::new("dash", "dash", program))
            .unwrap();
        let outcome = job.outcome().await;
        assert!(
            matches!(outcome.termination, Termination::Exited { code } if code != 0),
            "{outcome:?}"
        );
    });
}

#[test]
fn waiting_for_a_closed_port_fails_at_the_deadline() {
    run(|| async {
        let port = free_port();
        let began = Instant::now();
        let err = wait_port_ready(port, began + Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err.port, port);
        assert!(err.attempts >= 2, "{err}");
        assert!(began.elapsed() >= Duration::from_millis(200));
        assert!(began.elapsed() < Duration::from_secs(5), "{err}");
    });
}
