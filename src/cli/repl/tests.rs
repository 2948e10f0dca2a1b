//! The REPL loop without a master: piped input, errors with line numbers, EXIT, history paths.

use super::*;

/// An address where nothing listens: a port the OS just handed out and took back.
fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

fn run_piped(input: &str) -> (u8, String, String) {
    let mut session = Session::new(dead_addr(), titan_auth::KeyLookup::default());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = piped(&mut session, input.as_bytes(), &mut out, &mut err);
    (
        status,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn piped_help_prints_only_the_help() {
    let (status, out, err) = run_piped("HELP\n");
    assert_eq!(status, EXIT_OK);
    assert_eq!(out, help_text());
    assert_eq!(err, "");
}

#[test]
fn blank_lines_and_comments_are_skipped_and_exit_stops_reading() {
    let (status, out, err) = run_piped("\n# comment\n   \nhelp\nEXIT\nFROB\nSTATS\n");
    assert_eq!(status, EXIT_OK, "{err}");
    assert_eq!(out, help_text());
    assert_eq!(err, "");
}

#[test]
fn a_bad_line_is_reported_with_its_number_and_the_rest_still_runs() {
    let (status, out, err) = run_piped("# first\nFROB\nhelp\n");
    assert_eq!(status, EXIT_FAILED);
    assert_eq!(
        err,
        "error: line 2: unknown command \"FROB\" (type HELP for the list)\n"
    );
    assert_eq!(out, help_text());
}

#[test]
fn grammar_errors_name_the_job_line_and_field() {
    let (status, _, err) = run_piped("SUBMIT RUN|../../etc/passwd\n");
    assert_eq!(status, EXIT_FAILED);
    assert!(
        err.starts_with("error: line 1: job line 1: field DATA: '..' would escape perm_files/"),
        "{err}"
    );
}

#[test]
fn an_unreachable_master_fails_each_command_that_needs_it() {
    let (status, out, err) = run_piped("STATS\nWORKERS\nHELP\n");
    assert_eq!(status, EXIT_FAILED);
    assert_eq!(out, help_text());
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("error: line 1: cannot connect to the master at 127.0.0.1:"));
    assert!(lines[1].starts_with("error: line 2: cannot connect"));
}

#[test]
fn history_path_prefers_titan_history_and_can_be_turned_off() {
    let os = |s: &str| Some(OsString::from(s));
    assert_eq!(
        history_path(os("/tmp/h"), os("/home/u")),
        Some(PathBuf::from("/tmp/h"))
    );
    assert_eq!(
        history_path(None, os("/home/u")),
        Some(PathBuf::from("/home/u/.titan_history"))
    );
    assert_eq!(history_path(os(""), os("/home/u")), None);
    assert_eq!(history_path(None, None), None);
    assert_eq!(history_path(None, os("")), None);
}
